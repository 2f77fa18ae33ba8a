"""The three layouts of the dstc11 knowledge: their documents and titles, and where a label's
gold knowledge lands once the article layout is chunked and ingested."""

from __future__ import annotations

import json

import pytest

from aitl.core.db import Database
from aitl.core.settings import Settings
from benchmarks import kb_pipeline, layouts
from rag import factory
from rag.chunking import Chunker
from rag.store import ChunkRef

HOTEL = ("hotel", "0")  # A AND B GUEST HOUSE
SLICE = {HOTEL, ("restaurant", "19250")}


def entity(domain: str, entity_id: str) -> dict:
    return layouts.knowledge()[domain][entity_id]


def sizes(domain: str, entity_id: str) -> tuple[int, int]:
    """(FAQs, review sentences) of one entity."""
    found = entity(domain, entity_id)
    sentences = sum(len(r["sentences"]) for r in found["reviews"].values())
    return len(found["faqs"]), sentences


def target_labels() -> list[dict]:
    labels = json.loads((kb_pipeline.DSTC_DIR / "val" / "labels.json").read_text())
    return [label for label in labels if label["target"]]


def test_the_entity_layout_is_kb_pipelines_documents():
    assert layouts.documents("entity") == kb_pipeline.dstc_documents(10**9)
    docs = layouts.documents("entity", SLICE)
    assert len(docs) == sum(sum(sizes(*e)) for e in SLICE)
    hotel = [d for d in docs if d.external_id.startswith("faq:hotel:0:")]
    assert hotel[0].title == "A AND B GUEST HOUSE"
    assert hotel[0].body == (
        "Are children welcomed at this location? "
        "Yes, you can stay with children at A and B Guest House."
    )


def test_the_question_layout_titles_each_faq_with_its_question_and_keeps_the_answer():
    docs = {d.external_id: d for d in layouts.documents("question", SLICE)}
    entity_ids = {d.external_id for d in layouts.documents("entity", SLICE)}
    assert set(docs) == entity_ids  # the same ids as the entity layout
    faq = docs["faq:hotel:0:0"]
    assert faq.title == "A AND B GUEST HOUSE: Are children welcomed at this location?"
    assert faq.body == "Yes, you can stay with children at A and B Guest House."
    named = docs["faq:hotel:0:1"]  # the question names the guest house: kept as written
    assert named.title == "Can I bring my pet to A and B Guest House?"
    assert named.body == "No, pets are not allowed at this property."
    review = docs["review:hotel:0:0:1"]
    assert review.title == "A AND B GUEST HOUSE"
    assert review.body == entity(*HOTEL)["reviews"]["0"]["sentences"]["1"]
    faqs = [d for d in docs.values() if d.external_id.startswith("faq:")]
    assert len(faqs) == sum(sizes(*e)[0] for e in SLICE)
    assert all(d.title != d.body for d in faqs)
    assert len(layouts.documents("question")) == len(layouts.documents("entity"))


def test_question_titles_name_their_entity_once():
    assert layouts.question_title("Is there  wifi?", "ACORN GUEST HOUSE") == (
        "ACORN GUEST HOUSE: Is there wifi?"
    )
    assert layouts.question_title("Is the Acorn Guest House quiet?", "ACORN GUEST HOUSE") == (
        "Is the Acorn Guest House quiet?"
    )


def test_the_article_layout_is_one_document_per_entity_with_every_faq_and_review():
    docs = layouts.documents("article", SLICE)
    assert [d.external_id for d in docs] == ["article:hotel:0", "article:restaurant:19250"]
    assert len(layouts.documents("article")) == sum(len(e) for e in layouts.knowledge().values())
    hotel = layouts.article("hotel", "0", entity(*HOTEL))
    assert hotel.document.title == "A AND B GUEST HOUSE"
    assert hotel.document.body.startswith(
        "Are children welcomed at this location?\n"
        "Yes, you can stay with children at A and B Guest House.\n\n"
        "Can I bring my pet to A and B Guest House?\n"
    )
    faqs, sentences = sizes(*HOTEL)
    assert len(hotel.spans) == faqs + sentences
    body = layouts.normalised(hotel.document.body)
    start, end = hotel.spans["faq:hotel:0:1"]
    assert body[start:end] == "no, pets are not allowed at this property."
    start, end = hotel.spans["review:hotel:0:1:0"]
    assert body[start:end] == "my husband was pleased to be able to park on site for free."


def refs(article: layouts.Article, texts: list[str]) -> list[ChunkRef]:
    ext = article.document.external_id
    return [ChunkRef(100 + i, 1, "t", None, ext, text) for i, text in enumerate(texts)]


def test_article_gold_is_the_chunks_holding_the_snippet_or_each_part_of_a_split_one():
    article = layouts.article("hotel", "0", entity(*HOTEL))
    texts = Chunker(100, 0).split(article.document)  # small chunks: long sentences split
    gold = layouts.article_gold(article, refs(article, texts))
    assert set(gold) == set(article.spans)
    split = 0
    for item, chunk_ids in gold.items():
        start, end = article.spans[item]
        snippet = layouts.normalised(article.document.body)[start:end]
        held = [c for c in chunk_ids if snippet in layouts.normalised(texts[c - 100])]
        assert chunk_ids, item
        if not held:  # split: the gold chunks hold its words between them
            split += len(chunk_ids) > 1
            joined = " ".join(layouts.normalised(texts[c - 100]) for c in sorted(chunk_ids))
            assert all(word.strip(".,!?") in joined for word in snippet.split()), item
        else:
            assert held == sorted(chunk_ids)
    assert split, "the chunk size should split some sentence across two chunks"


def test_a_chunk_missing_from_its_article_is_an_error():
    article = layouts.article("hotel", "0", entity(*HOTEL))
    with pytest.raises(ValueError, match="not in its article"):
        layouts.article_gold(article, refs(article, ["words no guest house ever wrote"]))


@pytest.mark.slow
def test_every_gold_item_of_these_labels_lands_in_an_ingested_article_chunk(
    settings: Settings, db: Database
):
    labels = target_labels()
    chosen = labels[:4] + [label for label in labels if _has_faq(label)][:3]
    entities = {(k["domain"], str(k["entity_id"])) for lb in chosen for k in lb["knowledge"]}
    docs = layouts.documents("article", entities)
    factory.ingestor(settings, db).ingest(docs, source=kb_pipeline.SOURCE_DSTC)

    gold = layouts.gold_chunks("article", db)
    chunks = {ref.chunk_id: ref for refs in layouts.live_chunks(db).values() for ref in refs}
    assert len(chunks) > len(docs)  # the articles were chunked
    articles = {d.external_id: d for d in docs}
    for label in chosen:
        for knowledge in label["knowledge"]:
            item = layouts.item_id(knowledge)
            assert gold.get(item), item
            ext = layouts.article_id(knowledge["domain"], str(knowledge["entity_id"]))
            assert {chunks[c].external_id for c in gold[item]} == {ext}
            snippet = _snippet(knowledge)
            texts = " ".join(layouts.normalised(chunks[c].text) for c in sorted(gold[item]))
            assert snippet in texts or all(w in texts for w in snippet.split()), item
            assert snippet in layouts.normalised(articles[ext].body)
    # the question and entity layouts name each item by its own document
    assert layouts.item_id(chosen[0]["knowledge"][0]).startswith("review:hotel:20:")


def _has_faq(label: dict) -> bool:
    return any(k["doc_type"] == "faq" for k in label["knowledge"])


def _snippet(knowledge: dict) -> str:
    found = entity(knowledge["domain"], str(knowledge["entity_id"]))
    if knowledge["doc_type"] == "faq":
        return layouts.normalised(found["faqs"][str(knowledge["doc_id"])]["answer"])
    review = found["reviews"][str(knowledge["doc_id"])]
    return layouts.normalised(review["sentences"][str(knowledge["sent_id"])])
