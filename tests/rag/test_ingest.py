"""Ingest against the real store: formats, idempotency, soft deletes and bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from rag import factory, loaders, store
from rag.exceptions import DocumentError


def ingest(settings, db, path, **kwargs):
    return factory.ingestor(settings, db).ingest_path(
        path, source=kwargs.pop("source", "files"), max_bytes=settings.max_document_bytes, **kwargs
    )


def live_docs(db, source="files"):
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT external_id, title FROM kb_documents WHERE source = %s AND deleted_at IS NULL"
            " ORDER BY external_id",
            (source,),
        ).fetchall()
    return dict(rows)


@pytest.fixture
def kb_folder(tmp_path):
    folder = tmp_path / "kb"
    (folder / "billing").mkdir(parents=True)
    (folder / "refunds.md").write_text(
        "# Refund policy\n\nRefunds reach your card within **5 business days**.\n\n"
        "## Exceptions\n\n- Gift cards cannot be refunded.\n"
    )
    (folder / "billing" / "invoice.html").write_text(
        "<html><head><title>Download an invoice</title><style>p{}</style></head><body>"
        "<h1>Download an invoice</h1><p>Open Billing, then choose <b>Invoices</b>.</p>"
        "<script>alert(1)</script></body></html>"
    )
    (folder / "hours.txt").write_text("Support hours\nWe answer from 8am to 6pm CET.\n")
    records = [
        {
            "id": "faq-1",
            "title": "Change plan",
            "body": "Plans change at the next cycle.",
            "url": "https://help.example/faq-1",
            "locale": "en-GB",
            "updated_at": "2026-01-02T03:04:05Z",
        },
        {"id": 7, "title": "Pause a subscription", "body": "Pause for up to 3 months."},
    ]
    (folder / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def test_ingests_every_format_with_titles_and_chunks(settings, db, kb_folder):
    report = ingest(settings, db, kb_folder)
    assert (report.added, report.updated, report.unchanged, report.failures) == (5, 0, 0, [])
    assert live_docs(db) == {
        "7": "Pause a subscription",
        "billing/invoice.html": "Download an invoice",
        "faq-1": "Change plan",
        "hours.txt": "Support hours",
        "refunds.md": "Refund policy",
    }
    with db.connection() as conn:
        _, url, locale = conn.execute(
            "SELECT body, url, locale FROM kb_documents WHERE external_id = 'faq-1'"
        ).fetchone()
        html_body = conn.execute(
            "SELECT body FROM kb_documents WHERE external_id = 'billing/invoice.html'"
        ).fetchone()[0]
        version = store.live_version(conn)
        embedded = store.count_embeddings(conn, version.version)
        chunks = store.counts(conn)["chunks"]
    assert (url, locale) == ("https://help.example/faq-1", "en-GB")
    assert "alert" not in html_body and "p{}" not in html_body and "Invoices" in html_body
    assert report.chunks == chunks == embedded >= 5


def test_second_run_skips_unchanged_documents(settings, db, kb_folder):
    ingest(settings, db, kb_folder)
    with db.connection() as conn:
        before = conn.execute("SELECT id FROM kb_chunks ORDER BY id").fetchall()
    report = ingest(settings, db, kb_folder)
    assert (report.added, report.updated, report.unchanged, report.chunks) == (0, 0, 5, 0)
    with db.connection() as conn:
        assert conn.execute("SELECT id FROM kb_chunks ORDER BY id").fetchall() == before


def test_changed_document_is_rechunked_and_old_chunks_retired(settings, db, kb_folder):
    ingest(settings, db, kb_folder)
    with db.connection() as conn:
        old_ids = [
            r[0]
            for r in conn.execute(
                "SELECT c.id FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
                " WHERE d.external_id = 'refunds.md'"
            ).fetchall()
        ]
    (kb_folder / "refunds.md").write_text("# Refund policy\n\nRefunds now take 3 business days.\n")
    report = ingest(settings, db, kb_folder)
    assert (report.updated, report.unchanged) == (1, 4)
    with db.connection() as conn:
        retired = conn.execute(
            "SELECT count(*) FROM kb_chunks WHERE id = ANY(%s) AND retired_at IS NOT NULL",
            (old_ids,),
        ).fetchone()[0]
        stale_vectors = conn.execute(
            "SELECT count(*) FROM kb_chunk_embeddings WHERE chunk_id = ANY(%s)", (old_ids,)
        ).fetchone()[0]
    assert retired == len(old_ids) and stale_vectors == 0
    hits = factory.pipeline(settings, db).retriever.search("how long do refunds take", 3)
    assert "3 business days" in hits[0].text


def test_removed_file_is_soft_deleted_and_not_retrieved(settings, db, kb_folder):
    ingest(settings, db, kb_folder)
    (kb_folder / "hours.txt").unlink()
    report = ingest(settings, db, kb_folder)
    assert report.deleted == 1
    assert "hours.txt" not in live_docs(db)
    with db.connection() as conn:
        assert conn.execute(
            "SELECT deleted_at IS NOT NULL FROM kb_documents WHERE external_id = 'hours.txt'"
        ).fetchone()[0]
    hits = factory.pipeline(settings, db).retriever.search("support opening hours CET", 10)
    assert all(h.external_id != "hours.txt" for h in hits)
    # and it comes back when the file does
    (kb_folder / "hours.txt").write_text("Support hours\nWe answer from 8am to 6pm CET.\n")
    assert ingest(settings, db, kb_folder).added == 1
    assert "hours.txt" in live_docs(db)


def test_bad_files_are_reported_by_name_and_the_rest_ingested(settings, db, kb_folder):
    (kb_folder / "manual.pdf").write_bytes(b"%PDF-1.4")
    (kb_folder / "latin1.txt").write_bytes("Caf\xe9 hours\nOpen daily".encode("latin-1"))
    (kb_folder / "empty.md").write_text("# Only a title\n\n")
    (kb_folder / "huge.md").write_text("# Huge\n\n" + "word " * 1_000_000)
    (kb_folder / "faq.jsonl").write_text(
        '{"id": "ok", "title": "Fine", "body": "Fine."}\n'
        '{"id": "broken", "title": \n'
        '{"id": "nobody", "title": "No body"}\n'
    )
    report = ingest(settings, db, kb_folder)
    messages = {str(f.error) for f in report.failures}
    assert any("manual.pdf" in m and "unsupported file type" in m for m in messages)
    assert any("latin1.txt" in m and "not UTF-8" in m for m in messages)
    assert any("empty.md" in m and "no text" in m for m in messages)
    assert any("huge.md" in m and "AITL_MAX_DOCUMENT_BYTES" in m for m in messages)
    assert any("faq.jsonl:2" in m and "invalid JSON" in m for m in messages)
    assert any("faq.jsonl:3" in m and "body" in m for m in messages)
    assert {"refunds.md", "hours.txt", "ok"} <= set(live_docs(db))


def test_a_file_that_stops_loading_keeps_its_stored_version(settings, db, kb_folder):
    ingest(settings, db, kb_folder)
    (kb_folder / "hours.txt").write_bytes(b"\xff\xfe broken")
    (kb_folder / "faq.jsonl").write_text('{"id": "faq-1", "title": \n')
    report = ingest(settings, db, kb_folder)
    assert len(report.failures) == 2 and report.prune_skipped
    docs = live_docs(db)
    assert {"hours.txt", "faq-1", "7"} <= set(docs), "nothing stored may be lost"


def test_failure_mid_ingest_leaves_no_half_written_document(settings, db, kb_folder, monkeypatch):
    ingestor = factory.ingestor(settings, db)
    ingestor.batch_documents = 1
    calls = {"n": 0}
    original = store.insert_embeddings

    def failing_third(conn, version, chunk_ids, vectors):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return original(conn, version, chunk_ids, vectors)

    monkeypatch.setattr(store, "insert_embeddings", failing_third)
    with pytest.raises(RuntimeError, match="disk full"):
        ingestor.ingest_path(kb_folder, source="files", max_bytes=settings.max_document_bytes)
    with db.connection() as conn:
        docs = conn.execute("SELECT count(*) FROM kb_documents").fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM kb_chunks c WHERE NOT EXISTS"
            " (SELECT 1 FROM kb_chunk_embeddings e WHERE e.chunk_id = c.id)"
        ).fetchone()[0]
    assert docs == 2 and orphans == 0
    monkeypatch.setattr(store, "insert_embeddings", original)
    report = ingest(settings, db, kb_folder)
    assert (report.added, report.unchanged) == (3, 2)


def test_single_file_ingest_never_prunes_the_rest(settings, db, kb_folder):
    ingest(settings, db, kb_folder)
    report = ingest(settings, db, kb_folder / "refunds.md")
    assert (report.unchanged, report.deleted) == (1, 0)
    assert len(live_docs(db)) == 5


def test_sources_are_pruned_independently(settings, db, kb_folder, tmp_path):
    ingest(settings, db, kb_folder)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(kb_folder / "refunds.md", other / "refunds.md")
    ingest(settings, db, other, source="other")
    assert len(live_docs(db, "files")) == 5 and list(live_docs(db, "other")) == ["refunds.md"]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DocumentError, match="no such file or folder"):
        loaders.discover(tmp_path / "nope")


def test_sample_knowledge_base_ingests_cleanly(settings, db, sample_kb):
    report = ingest(settings, db, sample_kb, source="samples")
    assert report.failures == [] and report.added >= 30
