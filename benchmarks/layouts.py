"""Three layouts of the dstc11 knowledge, and where each label's gold knowledge lands after ingest.

The same knowledge (``benchmarks/data/dstc11_track5/data/knowledge.json``: FAQs and review
sentences of hotels and restaurants) cut three ways, so the flywheel benchmark can measure the
judge on more than one shape of knowledge base:

- ``entity``: kb_pipeline's documents, today's: one per FAQ ("question answer") and one per
  review sentence, titled with the entity's name as written in dstc11 (e.g. "A AND B GUEST
  HOUSE"). Ids ``faq:{domain}:{entity_id}:{faq_id}`` and
  ``review:{domain}:{entity_id}:{review_id}:{sent_id}``.
- ``question``: Help-Center style. Each FAQ is a document titled with its own question and
  holding the answer alone; the question is kept as written, and when it does not name its
  entity (two questions in three say "there", "this hotel", "your restaurant") the entity's
  name is put in front: "A AND B GUEST HOUSE: What time is check-in there?". Reviews stay as in
  ``entity``. Same ids as ``entity``.
- ``article``: one long article per entity, ``article:{domain}:{entity_id}``, titled with its
  name: every FAQ (the question on one line, the answer on the next), then every review (its
  sentences in one paragraph), paragraphs apart; the product's splitter chunks it
  (``settings.chunk_size``) through the normal ingest path.

A label's knowledge item is named by its ``entity`` id in every layout (:func:`item_id`). Its
gold chunks: in ``entity`` and ``question``, the chunks of the document with that id; in
``article``, the chunks of the entity's article whose text holds the FAQ's answer or the review
sentence, compared on normalised text (whitespace collapsed, lower case), at the place the
article put it; a snippet split across chunks makes each chunk holding part of it gold.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from aitl.core.db import Database
from benchmarks import kb_pipeline
from rag import store as rag_store
from rag.ingest import Ingestor
from rag.models import SourceDocument

LAYOUTS = ("entity", "question", "article")
Entity = tuple[str, str]  # (domain, entity id as in knowledge.json)


@cache
def knowledge() -> dict[str, dict[str, dict[str, Any]]]:
    """knowledge.json: domain → entity id → {name, faqs, reviews}."""
    return json.loads((kb_pipeline.DSTC_DIR / "knowledge.json").read_text(encoding="utf-8"))


def item_id(label_knowledge: dict[str, Any]) -> str:
    """The knowledge item a dstc11 label names, by its ``entity`` layout id."""
    prefix = f"{label_knowledge['doc_type']}:{label_knowledge['domain']}:"
    prefix += str(label_knowledge["entity_id"])
    if label_knowledge["doc_type"] == "review":
        return f"{prefix}:{label_knowledge['doc_id']}:{label_knowledge['sent_id']}"
    return f"{prefix}:{label_knowledge['doc_id']}"


def article_id(domain: str, entity_id: str) -> str:
    return f"article:{domain}:{entity_id}"


def normalised(text: str) -> str:
    return " ".join(text.split()).lower()


# --- documents ---------------------------------------------------------------------------


def documents(layout: str, entities: Collection[Entity] | None = None) -> list[SourceDocument]:
    """The layout's documents, in knowledge.json order; ``entities`` keeps only those."""
    if layout == "entity":
        docs = kb_pipeline.dstc_documents(10**9)
        if entities is None:
            return docs
        return [d for d in docs if _entity_of(d.external_id) in entities]
    if layout == "question":
        return [
            doc
            for domain, entity_id, entity in _entities(entities)
            for doc in _question_documents(domain, entity_id, entity)
        ]
    if layout == "article":
        return [
            article(domain, entity_id, entity).document
            for domain, entity_id, entity in (_entities(entities))
        ]
    raise ValueError(f"no such layout: {layout!r} (the layouts: {', '.join(LAYOUTS)})")


def _entities(only: Collection[Entity] | None) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for domain, entities in knowledge().items():
        for entity_id, entity in entities.items():
            if only is None or (domain, entity_id) in only:
                yield domain, entity_id, entity


def _entity_of(external_id: str) -> Entity:
    _, domain, entity_id, *_ = external_id.split(":")
    return domain, entity_id


def question_title(question: str, name: str) -> str:
    """The question as written, its entity's name in front unless the question names it."""
    question = " ".join(question.split())
    if normalised(name) in normalised(question):
        return question
    return f"{name}: {question}"


def _question_documents(
    domain: str, entity_id: str, entity: dict[str, Any]
) -> list[SourceDocument]:
    name = entity["name"]
    docs = [
        kb_pipeline._doc(
            kb_pipeline.SOURCE_DSTC,
            f"faq:{domain}:{entity_id}:{faq_id}",
            question_title(faq["question"], name),
            faq["answer"],
        )
        for faq_id, faq in entity["faqs"].items()
    ]
    for review_id, review in entity["reviews"].items():
        for sent_id, sentence in review["sentences"].items():
            ext = f"review:{domain}:{entity_id}:{review_id}:{sent_id}"
            docs.append(kb_pipeline._doc(kb_pipeline.SOURCE_DSTC, ext, name, sentence))
    return docs


@dataclass(frozen=True)
class Article:
    """One entity's article and where each knowledge item sits in its normalised text."""

    document: SourceDocument
    spans: dict[str, tuple[int, int]]  # item id → [start, end) in normalised(document.body)


def article(domain: str, entity_id: str, entity: dict[str, Any]) -> Article:
    """Every FAQ (question line, answer line), then every review (one paragraph each)."""
    paragraphs: list[tuple[str, dict[str, str]]] = []  # (text, {item id: snippet in it})
    for faq_id, faq in entity["faqs"].items():
        question, answer = " ".join(faq["question"].split()), " ".join(faq["answer"].split())
        item = f"faq:{domain}:{entity_id}:{faq_id}"
        paragraphs.append((f"{question}\n{answer}", {item: answer}))
    for review_id, review in entity["reviews"].items():
        sentences = {
            f"review:{domain}:{entity_id}:{review_id}:{sent_id}": " ".join(sentence.split())
            for sent_id, sentence in review["sentences"].items()
        }
        paragraphs.append((" ".join(sentences.values()), sentences))
    spans: dict[str, tuple[int, int]] = {}
    offset = 0  # in the normalised body: paragraphs joined by one space once normalised
    for text, snippets in paragraphs:
        flat = normalised(text)
        at = 0
        for item, snippet in snippets.items():
            start = flat.index(normalised(snippet), at)
            spans[item] = (offset + start, offset + start + len(normalised(snippet)))
            at = start + len(normalised(snippet))
        offset += len(flat) + 1
    body = "\n\n".join(text for text, _ in paragraphs)
    document = kb_pipeline._doc(
        kb_pipeline.SOURCE_DSTC, article_id(domain, entity_id), entity["name"], body
    )
    return Article(document, spans)


# --- ingest ------------------------------------------------------------------------------


def build_kb(
    layout: str, ingestor: Ingestor, db: Database, chunk_size: int
) -> kb_pipeline.IngestFigures:
    """Ingest the layout's documents through ``ingestor`` (which chunks them at the settings'
    ``chunk_size``); ``entity`` is kb_pipeline's build with no synthetic top-up."""
    if layout == "entity":
        docs = len(kb_pipeline.dstc_documents(10**9))
        return kb_pipeline.build_kb(ingestor, db, docs, chunk_size)
    docs = documents(layout)
    with kb_pipeline._progress() as progress:
        task = progress.add_task(f"ingest ({layout})", total=len(docs), rate="")
        report, seconds = kb_pipeline._timed_ingest(
            ingestor, docs, kb_pipeline.SOURCE_DSTC, progress, task
        )
    return kb_pipeline.IngestFigures(
        documents=len(docs),
        dstc_documents=len(docs),
        synthetic_documents=0,
        chunks_ingested=report.chunks,
        chunks_in_kb=kb_pipeline._kb_chunks(db),
        dstc_seconds=seconds,
        synthetic_seconds=0.0,
    )


# --- gold --------------------------------------------------------------------------------


def live_chunks(db: Database) -> dict[str, list[rag_store.ChunkRef]]:
    """Document external id → its live chunks, in document order."""
    with db.connection() as conn:
        ids = [chunk_id for chunk_id, _, _ in rag_store.live_chunk_texts(conn)]
        refs = rag_store.chunk_refs(conn, ids)
    found: dict[str, list[rag_store.ChunkRef]] = {}
    for chunk_id in sorted(refs):  # ids are handed out in each document's chunk order
        found.setdefault(refs[chunk_id].external_id, []).append(refs[chunk_id])
    return found


def gold_chunks(layout: str, db: Database) -> dict[str, frozenset[int]]:
    """Knowledge item id → its gold chunk ids in the live knowledge base."""
    chunks = live_chunks(db)
    if layout in ("entity", "question"):
        return {ext: frozenset(c.chunk_id for c in refs) for ext, refs in chunks.items()}
    if layout != "article":
        raise ValueError(f"no such layout: {layout!r}")
    found: dict[str, frozenset[int]] = {}
    for domain, entity_id, entity in _entities(None):
        refs = chunks.get(article_id(domain, entity_id))
        if refs:
            found |= article_gold(article(domain, entity_id, entity), refs)
    return found


def article_gold(article: Article, chunks: list[rag_store.ChunkRef]) -> dict[str, frozenset[int]]:
    """Each item of ``article`` → the chunks holding it whole, or, where none does (it was
    split), every chunk holding a part of it with a letter or digit in it."""
    body = normalised(article.document.body)
    placed = chunk_spans(body, [c.text for c in chunks])
    found = {}
    for item, (start, end) in article.spans.items():
        whole = [
            c.chunk_id for c, (a, b) in zip(chunks, placed, strict=True) if a <= start and end <= b
        ]
        if not whole:
            whole = [
                c.chunk_id
                for c, (a, b) in zip(chunks, placed, strict=True)
                if any(ch.isalnum() for ch in body[max(a, start) : min(b, end)])
            ]
        found[item] = frozenset(whole)
    return found


def chunk_spans(body: str, texts: list[str]) -> list[tuple[int, int]]:
    """Where each chunk's normalised text sits in the normalised ``body``; the splitter hands
    out chunks in order, each starting after the one before (they may overlap)."""
    spans, after = [], 0
    for text in texts:
        flat = normalised(text)
        start = body.find(flat, after)
        if start < 0:
            start = body.find(flat)
        if start < 0:
            raise ValueError(f"a chunk is not in its article: {flat[:60]!r}")
        spans.append((start, start + len(flat)))
        after = start + 1
    return spans
