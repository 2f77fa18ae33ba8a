"""Embedding versions (blue/green, mismatch errors) and retrieval quality on the samples."""

from __future__ import annotations

import json

import pytest

from rag import exceptions, factory, store
from rag.models import Ticket
from tests.conftest import SAMPLES, make_settings


@pytest.fixture(scope="session")
def projected_model(tmp_path_factory, minilm_path):
    """Factory of MiniLM + a random Dense projection: another model, of a chosen dimension."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    made = {}

    def build(dim: int):
        if dim not in made:
            model = SentenceTransformer(str(minilm_path), device="cpu", local_files_only=True)
            model.append(Dense(384, dim))
            folder = tmp_path_factory.mktemp(f"minilm_{dim}")
            model.save(str(folder))
            made[dim] = folder
        return made[dim]

    return build


@pytest.fixture
def ingested(kb_settings):
    return kb_settings


def test_first_ingest_creates_a_live_base_version_with_its_hnsw_index(ingested, kb_db):
    with kb_db.connection() as conn:
        versions = store.list_versions(conn)
        assert [(v.state, v.origin, v.dimension) for v in versions] == [("live", "settings", 384)]
        # on ~100 rows a sort is cheaper; forbidding it shows the query fits the partial index
        conn.execute("SET LOCAL enable_sort = off")
        plan = store.explain_search(conn, versions[0], [0.1] * 384)
    assert store.index_name(versions[0].version) in plan


def test_configured_model_of_another_dimension_is_refused(
    ingested, kb_db, projected_model, tmp_path
):
    other = make_settings(
        ingested.database_url.get_secret_value(), tmp_path, embedding_model=str(projected_model(64))
    )
    with pytest.raises(exceptions.EmbeddingDimensionMismatch) as info:
        factory.pipeline(other, kb_db).draft(Ticket("refund", "How long do refunds take?"))
    message = str(info.value)
    assert "AITL_EMBEDDING_MODEL" in message and "64" in message and "384" in message


def test_configured_model_of_same_dimension_but_other_weights_is_refused(
    ingested, kb_db, projected_model, tmp_path
):
    other = make_settings(
        ingested.database_url.get_secret_value(),
        tmp_path,
        embedding_model=str(projected_model(384)),
    )
    with pytest.raises(exceptions.EmbeddingModelChanged, match="kb reembed"):
        factory.pipeline(other, kb_db).retriever.search("refund", 3)


def test_reembed_builds_beside_the_live_version_then_switches_and_rolls_back(
    ingested, kb_db, projected_model
):
    versions = factory.embedding_versions(ingested, kb_db)
    retriever = factory.pipeline(ingested, kb_db, versions=versions).retriever
    with kb_db.connection() as conn:
        base = store.live_version(conn).version
    built = versions.build("challenger_v2", str(projected_model(64)))
    with kb_db.connection() as conn:
        assert store.live_version(conn).version == base, "building must not touch live"
        assert store.count_embeddings(conn, built) == store.counts(conn)["chunks"]
    assert retriever.describe()["embedding_version"] == base

    assert versions.switch(built) == base
    assert retriever.describe()["embedding_version"] == "challenger_v2"
    assert len(retriever.search("reset my password", 5)) == 5
    with kb_db.connection() as conn:
        states = {v.version: v.state for v in store.list_versions(conn)}
    assert states == {base: "ready", "challenger_v2": "live"}

    assert versions.switch(base) == "challenger_v2"  # rollback keeps both
    assert retriever.describe()["embedding_version"] == base


def test_a_switch_goes_live_only_with_what_records_it(ingested, kb_db, projected_model):
    """The model registry records a retriever's promotion in the switching transaction: if
    the record fails, the old index stays live; if it succeeds, both are committed."""
    import psycopg

    versions = factory.embedding_versions(ingested, kb_db)
    with kb_db.connection() as conn:
        base = store.live_version(conn).version
        conn.execute("CREATE TABLE switch_log (version text NOT NULL)")
    built = versions.build("v2", str(projected_model(64)))

    def failing_record(conn) -> None:
        conn.execute("INSERT INTO switch_log VALUES (NULL)")

    with pytest.raises(psycopg.errors.NotNullViolation):
        versions.switch(built, then=failing_record)
    with kb_db.connection() as conn:
        assert store.live_version(conn).version == base

    def record(conn) -> None:
        conn.execute("INSERT INTO switch_log VALUES (%s)", (built,))

    assert versions.switch(built, then=record) == base
    with kb_db.connection() as conn:
        assert store.live_version(conn).version == built
        assert conn.execute("SELECT version FROM switch_log").fetchall() == [(built,)]


def test_switch_embeds_chunks_ingested_while_the_version_was_built(
    ingested, kb_db, projected_model, tmp_path
):
    versions = factory.embedding_versions(ingested, kb_db)
    built = versions.build("v2", str(projected_model(64)))
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.md").write_text("# Gift wrapping\n\nWe gift wrap orders for 4 euros.\n")
    factory.ingestor(ingested, kb_db, versions).ingest_path(extra, source="extra", max_bytes=10**6)
    versions.switch(built)
    with kb_db.connection() as conn:
        assert store.count_embeddings(conn, built) == store.counts(conn)["chunks"]
    hits = factory.pipeline(ingested, kb_db, versions=versions).retriever.search("gift wrap", 3)
    assert any(h.title == "Gift wrapping" for h in hits)


def test_build_reuses_known_vectors_only_where_the_text_is_unchanged(
    ingested, kb_db, projected_model
):
    """A flywheel promotion hands over the vectors its evaluation computed: the index must
    hold exactly those, except for a chunk whose text changed since (encoded afresh)."""
    import numpy as np

    from rag.chunking import embedding_text

    versions = factory.embedding_versions(ingested, kb_db)
    with kb_db.connection() as conn:
        chunks = store.live_chunk_texts(conn)
    planted = {cid: np.eye(64, dtype=np.float32)[cid % 64] for cid, _, _ in chunks}
    known = {cid: (embedding_text(title, text), planted[cid]) for cid, title, text in chunks}
    stale = chunks[0][0]
    known[stale] = ("an older text of this chunk", planted[stale])
    built = versions.build("reused_v2", str(projected_model(64)), known=known)
    with kb_db.connection() as conn:
        stored = store.stored_embeddings(conn, built, list(planted))
    assert set(stored) == set(planted)
    assert all(np.array_equal(stored[c], planted[c]) for c in planted if c != stale)
    assert not np.array_equal(stored[stale], planted[stale])
    assert abs(float(np.linalg.norm(stored[stale])) - 1.0) < 1e-3  # the model's own vector


def test_search_before_any_ingest_says_what_to_do(settings, db):
    with pytest.raises(exceptions.NoLiveEmbeddingVersion, match="aitl kb ingest"):
        factory.pipeline(settings, db).retriever.search("anything", 3)


def test_hnsw_and_exact_search_agree_on_the_samples(ingested, kb_db):
    retriever = factory.pipeline(ingested, kb_db).retriever
    for query in ("cancel my subscription", "camera night vision is blurry", "C-wire"):
        fast = [h.chunk_id for h in retriever.search(query, 10)]
        exact = [h.chunk_id for h in retriever.search(query, 10, exact=True)]
        assert len(set(fast) & set(exact)) >= 9


def test_sample_tickets_retrieve_their_expected_articles(ingested, kb_db):
    """A quality floor for the untrained MiniLM retriever on the shipped samples."""
    pipeline = factory.pipeline(ingested, kb_db)
    records = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()]
    found = 0
    for record in records:
        ticket = Ticket(record["subject"], record["body"], external_id=record["id"])
        top = {h.external_id for h in pipeline.retriever.search(ticket.query_text(), 5)}
        found += bool(top & set(record["expected_articles"]))
    assert found / len(records) >= 0.8


def test_drafts_cite_retrieved_chunks_and_record_their_producer(ingested, kb_db):
    pipeline = factory.pipeline(ingested, kb_db)
    result = pipeline.draft(
        Ticket(
            "Can't log in",
            "I forgot my password and the reset email never arrives. What should I do?",
            external_id="T-1",
        )
    )
    a, b = result.drafts
    assert (a.label, b.label) == ("A", "B")
    assert a.text != b.text
    retrieved = {c.chunk_id for c in result.context}
    for draft in result.drafts:
        assert draft.citations and {c.chunk_id for c in draft.citations} <= retrieved
        assert draft.producer["backend"] == "extractive"
        assert draft.producer["embedding_version"].startswith("base_")
        assert draft.producer["reranker"] == "cosine"
        assert draft.text.startswith("Hi there,")
    assert a.producer["variant"] != b.producer["variant"]
    assert len(a.citations) <= len(b.citations)
    assert any(c.external_id == "reset-your-password.md" for c in a.citations)
    assert set(result.timings_ms) == {"retrieve", "rerank", "generate", "total"}
