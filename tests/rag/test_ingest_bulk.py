"""Fast ingest against the real store: documents committed a batch at a time, and a version's
HNSW index built after a bulk load instead of row by row, with search right all along."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from rag import factory, store
from rag import versions as rag_versions
from rag.chunking import embedding_text
from rag.models import SourceDocument

TOPICS = (
    "Refunds reach your card within five business days after the return is inspected.",
    "Reset your password from the sign-in page with the Forgot password link.",
    "Parcels stuck in transit for more than 48 hours can be claimed from the Orders page.",
    "Invoices are in Billing, History, as PDF files with the VAT number on them.",
    "The thermostat blinks orange when its firmware update failed: hold reset ten seconds.",
    "Gift cards never expire and cannot be refunded or exchanged for cash.",
    "Roaming passes must be added before you travel, from the app's Plans tab.",
    "Webhook signatures are computed over the raw body with your signing secret.",
)
QUERIES = ("How long does my refund take?", "I forgot my password", "Where is my invoice?")


def doc(i: int, body: str | None = None) -> SourceDocument:
    return SourceDocument(
        source="help",
        external_id=f"article-{i}",
        title=f"Article {i}",
        body=body or f"{TOPICS[i % len(TOPICS)]} (article {i})",
        updated_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def index_oid(db, version: str) -> int | None:
    """The index's identity: a rebuilt index is a new relation."""
    with db.connection() as conn:
        row = conn.execute("SELECT to_regclass(%s)::oid", (store.index_name(version),)).fetchone()
    return row[0]


def live_version(db) -> store.EmbeddingVersion:
    with db.connection() as conn:
        version = store.live_version(conn)
    assert version is not None
    return version


def assert_search_is_exact(settings, db) -> None:
    """HNSW search returns what a full scan returns (the KB is tiny: the graph is exact)."""
    retriever = factory.pipeline(settings, db).retriever
    for query in QUERIES:
        approx = [c.chunk_id for c in retriever.search(query, 5)]
        exact = [c.chunk_id for c in retriever.search(query, 5, exact=True)]
        assert approx == exact and len(approx) == 5


def plan_uses_index(db, version: store.EmbeddingVersion) -> bool:
    with db.connection() as conn:
        # on a few rows a sort is cheaper; forbidding it shows the query fits the index
        conn.execute("SET LOCAL enable_sort = off")
        plan = store.explain_search(conn, version, [0.1] * version.dimension)
    return store.index_name(version.version) in plan


def test_a_first_ingest_builds_the_index_after_loading_and_search_uses_it(settings, db):
    ingestor = factory.ingestor(settings, db)
    version, _ = ingestor.versions.live_or_bootstrap()
    created_with_version = index_oid(db, version.version)

    report = ingestor.ingest([doc(i) for i in range(12)], source="help")

    assert (report.added, report.chunks) == (12, 12)
    rebuilt = index_oid(db, version.version)
    assert rebuilt is not None and rebuilt != created_with_version
    assert plan_uses_index(db, version)
    with db.connection() as conn:
        assert store.count_embeddings(conn, version.version) == 12
    assert_search_is_exact(settings, db)


def test_a_small_load_into_a_larger_version_keeps_its_index_row_by_row(settings, db):
    ingestor = factory.ingestor(settings, db)
    ingestor.ingest([doc(i) for i in range(10)], source="help")
    version = live_version(db)
    before = index_oid(db, version.version)

    report = ingestor.ingest([doc(i) for i in range(10, 13)], source="help")

    assert report.added == 3
    assert index_oid(db, version.version) == before
    assert_search_is_exact(settings, db)


@pytest.mark.parametrize("scan_max", [1_000, 5])
def test_a_load_that_outgrows_the_live_version_rebuilds_its_index_while_it_is_small(
    settings, db, monkeypatch, scan_max
):
    """Past half of what the live version held, the index is set aside and rebuilt, unless
    the version is too large for drafts to search it by exact scan meanwhile."""
    ingestor = factory.ingestor(settings, db)
    ingestor.batch_documents = 2
    ingestor.ingest([doc(i) for i in range(4)], source="help")
    version = live_version(db)
    before = index_oid(db, version.version)
    versions = ingestor.versions
    versions.settings = dataclasses.replace(versions.settings, bulk_load_min=2)
    monkeypatch.setattr(rag_versions, "LIVE_SCAN_MAX", scan_max)

    # 4 vectors held, bulk_load_min 2: past the first 2 new ones the index may go aside
    report = ingestor.ingest([doc(i) for i in range(4, 14)], source="help")

    assert report.added == 10
    after = index_oid(db, version.version)
    assert after is not None and (after != before) == (scan_max == 1_000)
    assert plan_uses_index(db, version)
    assert_search_is_exact(settings, db)


def test_an_incremental_ingest_after_a_bulk_load_replaces_the_changed_chunks(settings, db):
    ingestor = factory.ingestor(settings, db)
    ingestor.ingest([doc(i) for i in range(10)], source="help")
    changed = doc(3, "Parking at the hotel costs 12 euros a night; the garage closes at midnight.")

    report = ingestor.ingest([changed, doc(11)], source="help")

    assert (report.added, report.updated) == (1, 1)
    version = live_version(db)
    assert plan_uses_index(db, version)
    found = factory.pipeline(settings, db).retriever.search("Is there parking at the hotel?", 1)
    assert found[0].external_id == "article-3" and "garage" in found[0].text
    with db.connection() as conn:
        assert store.count_embeddings(conn, version.version) == 11  # the old chunk's vector went
    assert_search_is_exact(settings, db)


def test_search_during_a_bulk_load_is_an_exact_scan_of_what_is_stored(settings, db):
    """A draft while the first ingest runs: the index is aside, the search still right."""
    ingestor = factory.ingestor(settings, db)
    ingestor.batch_documents = 4
    version, _ = ingestor.versions.live_or_bootstrap()
    retriever = factory.pipeline(settings, db).retriever
    seen: dict[str, object] = {}

    def documents() -> Iterator[SourceDocument]:
        for i in range(12):
            if i == 8:  # batch one is written or being written: wait until it is stored
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with db.connection() as conn:
                        if store.count_embeddings(conn, version.version) >= 4:
                            break
                    time.sleep(0.05)
                with db.connection() as conn:
                    seen["indexed"] = store.has_index(conn, version.version)
                seen["approx"] = [c.chunk_id for c in retriever.search(QUERIES[0], 3)]
                seen["exact"] = [c.chunk_id for c in retriever.search(QUERIES[0], 3, exact=True)]
            yield doc(i)

    ingestor.ingest(documents(), source="help")

    assert seen["indexed"] is False
    assert seen["approx"] == seen["exact"] and len(seen["approx"]) == 3  # type: ignore[arg-type]
    with db.connection() as conn:
        assert store.has_index(conn, version.version)


def test_a_failing_document_in_a_batch_keeps_those_before_it_and_itself_untouched(
    settings, db, caplog
):
    ingestor = factory.ingestor(settings, db)
    ingestor.ingest([doc(1)], source="help")
    before = factory.pipeline(settings, db).retriever.search(TOPICS[1], 1)[0]
    broken = doc(1, "A body Postgres refuses: \x00 is not text")

    # one batch: article-0 before the broken one, article-2 after it
    with pytest.raises(psycopg.DataError):
        ingestor.ingest([doc(0), broken, doc(2)], source="help")

    assert "writing them one by one" in caplog.text  # the batch's transaction was tried first

    with db.connection() as conn:
        stored = dict(
            conn.execute(
                "SELECT external_id, body FROM kb_documents WHERE deleted_at IS NULL"
            ).fetchall()
        )
        orphans = conn.execute(
            "SELECT count(*) FROM kb_chunks c WHERE c.retired_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM kb_chunk_embeddings e WHERE e.chunk_id = c.id)"
        ).fetchone()[0]
        assert store.has_index(conn, live_version(db).version)
    assert set(stored) == {"article-0", "article-1"}
    assert stored["article-1"] == doc(1).body and orphans == 0
    after = factory.pipeline(settings, db).retriever.search(TOPICS[1], 1)[0]
    assert (after.chunk_id, after.text) == (before.chunk_id, before.text)

    report = ingestor.ingest([doc(0), doc(1), doc(2)], source="help")
    assert (report.unchanged, report.added) == (2, 1)


def test_a_blue_green_build_fills_the_new_version_then_indexes_it(settings, db, minilm_path):
    ingestor = factory.ingestor(settings, db)
    ingestor.ingest([doc(i) for i in range(10)], source="help")
    versions = ingestor.versions

    name = versions.build("again", str(minilm_path))

    with db.connection() as conn:
        built = store.get_version(conn, name)
        assert built is not None and built.state == "ready"
        assert store.count_embeddings(conn, name) == 10
    assert plan_uses_index(db, built)


def test_start_up_rebuilds_an_index_a_dead_load_left_aside_but_not_a_running_ones(settings, db):
    ingestor = factory.ingestor(settings, db)
    ingestor.ingest([doc(i) for i in range(6)], source="help")
    version = live_version(db)
    versions = ingestor.versions
    with db.connection() as conn:  # as a load that died after setting the index aside
        assert store.drop_index(conn, version.version, wait_s=5)

    with db.connection() as loader:  # another process loading into the version
        store.hold_load(loader, version.version)
        loader.commit()
        versions.prepare_live()
        with db.connection() as conn:
            assert not store.has_index(conn, version.version)
        store.release_load(loader, version.version)

    versions.prepare_live()
    assert plan_uses_index(db, version)
    assert_search_is_exact(settings, db)


def test_each_chunk_of_a_batch_gets_its_own_vector_whatever_the_batch_bounds(settings, db):
    ingestor = factory.ingestor(settings, db)
    ingestor.batch_chunks = 4  # long documents end a batch early
    long_body = "\n\n".join(f"{TOPICS[j]} " * 6 for j in range(4))  # several chunks
    docs = [doc(0), doc(1, long_body), doc(2), doc(3, long_body[::-1]), doc(4)]

    report = ingestor.ingest(docs, source="help")

    version, embedder = ingestor.versions.live()
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT c.id, d.external_id, c.ordinal, d.title, c.text FROM kb_chunks c"
            " JOIN kb_documents d ON d.id = c.document_id WHERE c.retired_at IS NULL"
            " ORDER BY d.external_id, c.ordinal"
        ).fetchall()
        stored = store.stored_embeddings(conn, version.version, [r[0] for r in rows])
    by_document: dict[str, list[int]] = {}
    for _, external_id, ordinal, _, _ in rows:
        by_document.setdefault(external_id, []).append(ordinal)
    assert by_document["article-1"] == list(range(len(by_document["article-1"])))
    assert len(by_document["article-1"]) > 1 and report.chunks == len(rows) == len(stored)
    expected = embedder.encode([embedding_text(r[3], r[4]) for r in rows])
    for (chunk_id, *_), vector in zip(rows, expected, strict=True):
        assert float(stored[chunk_id] @ vector) > 0.999
