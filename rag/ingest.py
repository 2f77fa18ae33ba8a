"""Idempotent ingest: unchanged documents skipped by hash, changed ones re-chunked and
re-embedded, removed ones soft-deleted. A batch of documents commits at once, or, when it
fails, each of its documents on its own up to the one that fails: so a failure never leaves a
document half-written and never loses what was stored before.

Throughput: a batch is written (on one writer thread) while the next one is encoded, and a
large load builds the version's HNSW index once at the end rather than row by row
(``rag.versions.IndexLoad``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from aitl.core.db import Database
from rag import loaders, store
from rag.chunking import Chunker, content_hash, embedding_text
from rag.models import SourceDocument
from rag.versions import EmbeddingVersions, IndexLoad

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    relabelled: int = 0  # unchanged text, new audience / brand / metadata: no re-embedding
    chunks: int = 0
    failures: list[loaders.LoadFailure] = field(default_factory=list)
    prune_skipped: bool = False

    @property
    def seen(self) -> int:
        return self.added + self.updated + self.unchanged


@dataclass
class _Prepared:
    document: SourceDocument
    content_hash: str
    chunks: list[str]
    is_new: bool


class Ingestor:
    """Writes documents through the store, embedding them with the live version's model."""

    def __init__(
        self,
        db: Database,
        versions: EmbeddingVersions,
        chunker: Chunker,
        *,
        batch_documents: int = 256,
        batch_chunks: int = 2048,
    ) -> None:
        self.db = db
        self.versions = versions
        self.chunker = chunker
        # a batch ends at either bound: many short documents share one encoding call (longer
        # calls pad less), long ones do not hold thousands of chunks in memory at once
        self.batch_documents = batch_documents
        self.batch_chunks = batch_chunks

    def ingest_path(
        self,
        path: Path,
        *,
        source: str,
        max_bytes: int,
        prune: bool = True,
        on_file: Callable[[Path], None] | None = None,
        force: bool = False,
    ) -> IngestReport:
        """Ingest a folder (or one file). With ``prune``, a folder's vanished documents are
        soft-deleted; documents whose file failed to load are kept as they were."""
        files = loaders.discover(path)
        root = path if path.is_dir() else path.parent
        report = IngestReport()
        seen: list[str] = []

        def documents() -> Iterator[SourceDocument]:
            for file in files:
                for item in loaders.load_file(file, root=root, source=source, max_bytes=max_bytes):
                    if isinstance(item, loaders.LoadFailure):
                        report.failures.append(item)
                        if file.suffix.lower() in loaders.JSONL:
                            # the bad record's id is unknown: pruning could delete its
                            # stored version, so this run prunes nothing
                            report.prune_skipped = True
                        else:
                            seen.append(loaders.file_external_id(file, root))
                    else:
                        seen.append(item.external_id)
                        yield item
                if on_file:
                    on_file(file)

        self.ingest(documents(), source=source, report=report, force=force)
        if prune and path.is_dir() and not report.prune_skipped:
            report.deleted = self._prune(source, seen)
        return report

    def sync(self, documents: Iterable[SourceDocument], *, source: str) -> IngestReport:
        """Make ``source`` hold exactly these documents (an API listing, not a folder)."""
        docs = list(documents)
        report = self.ingest(docs, source=source)
        report.deleted = self._prune(source, [d.external_id for d in docs])
        return report

    def _prune(self, source: str, seen: list[str]) -> int:
        """Soft-delete the source's documents that are not in ``seen``; how many went."""
        with self.db.connection() as conn:
            store.lock_source(conn, source)
            return len(store.soft_delete_missing(conn, source, seen))

    def ingest(
        self,
        documents: Iterable[SourceDocument],
        *,
        source: str,
        report: IngestReport | None = None,
        force: bool = False,
    ) -> IngestReport:
        """Ingest documents of one source, a batch at a time: one embedding call and one
        transaction per batch, each batch written while the next is encoded."""
        report = report or IngestReport()
        version, embedder = self.versions.live_or_bootstrap()
        embedder.prepare()  # exports once per model; later calls read the decision
        with self.db.connection() as conn:
            known = store.document_hashes(conn, source)
            store.note_backend(conn, version.version, embedder.backend)
        with self.versions.loading(version.version) as load, _Writer() as writer:
            for batch, prepared in self._batches(documents, known, report, force):
                texts = [embedding_text(p.document.title, c) for p in prepared for c in p.chunks]
                vectors = embedder.encode(texts)
                writer.submit(self._write, batch, prepared, version.version, vectors, report, load)
        return report

    def _write(
        self,
        batch: list[SourceDocument],
        prepared: list[_Prepared],
        version: str,
        vectors: np.ndarray,
        report: IngestReport,
        load: IndexLoad,
    ) -> None:
        """One batch, on the writer thread (the report's counts of writes are its own)."""
        self._relabel(batch, prepared, report)
        if not prepared:
            return
        if len({p.document.external_id for p in prepared}) < len(prepared):
            # a document named twice in one batch: in order, so the later one wins
            self._commit_each(prepared, version, vectors, report, load)
            return
        try:
            self._commit_batch(prepared, version, vectors)
        except Exception:
            if len(prepared) == 1:
                raise
            log.warning("a batch of %d documents failed; writing them one by one", len(prepared))
            self._commit_each(prepared, version, vectors, report, load)
            return
        for item in prepared:
            self._count(item, report)
        load.wrote(len(vectors))

    def _commit_batch(self, prepared: list[_Prepared], version: str, vectors: np.ndarray) -> None:
        writes = [store.DocumentWrite(p.document, p.content_hash, p.chunks) for p in prepared]
        with self.db.connection() as conn:
            # ingest is idempotent and re-runnable, so it need not wait for each fsync: a crash
            # can lose only the last documents, never leave one half-written
            conn.execute("SET LOCAL synchronous_commit = off")
            for source in sorted({p.document.source for p in prepared}):
                store.lock_source(conn, source)
            store.write_documents(conn, version, writes, vectors)

    def _commit_each(
        self,
        prepared: list[_Prepared],
        version: str,
        vectors: np.ndarray,
        report: IngestReport,
        load: IndexLoad,
    ) -> None:
        """Each document in its own transaction, in order: those before a failing one are
        stored, the failing one keeps what it had, and its error goes to the caller."""
        offset = 0
        for item in prepared:
            n = len(item.chunks)
            self._commit(item, version, vectors[offset : offset + n])
            offset += n
            self._count(item, report)
            load.wrote(n)

    @staticmethod
    def _count(item: _Prepared, report: IngestReport) -> None:
        report.chunks += len(item.chunks)
        report.added += item.is_new
        report.updated += not item.is_new

    def _relabel(
        self, batch: list[SourceDocument], prepared: list[_Prepared], report: IngestReport
    ) -> None:
        rewritten = {p.document.external_id for p in prepared}
        unchanged = [d for d in batch if d.external_id not in rewritten]
        if unchanged:
            with self.db.connection() as conn:
                report.relabelled += store.relabel_documents(conn, unchanged)

    def _batches(
        self,
        documents: Iterable[SourceDocument],
        known: dict[str, str],
        report: IngestReport,
        force: bool,
    ) -> Iterator[tuple[list[SourceDocument], list[_Prepared]]]:
        """Documents in batches, each with those of them to (re)write, chunked."""
        batch: list[SourceDocument] = []
        prepared: list[_Prepared] = []
        chunks = 0
        for doc in documents:
            batch.append(doc)
            item = self._prepare(doc, known, report, force)
            if item is not None:
                prepared.append(item)
                chunks += len(item.chunks)
            if len(batch) >= self.batch_documents or chunks >= self.batch_chunks:
                yield batch, prepared
                batch, prepared, chunks = [], [], 0
        if batch:
            yield batch, prepared

    def _prepare(
        self, doc: SourceDocument, known: dict[str, str], report: IngestReport, force: bool
    ) -> _Prepared | None:
        """The document chunked for writing, or None when it is unchanged."""
        digest = content_hash(doc)
        if not force and known.get(doc.external_id) == digest:
            report.unchanged += 1
            return None
        item = _Prepared(doc, digest, self.chunker.split(doc), doc.external_id not in known)
        known[doc.external_id] = digest
        return item

    def _commit(self, item: _Prepared, version: str, vectors) -> None:
        with self.db.connection() as conn:
            # ingest is idempotent and re-runnable, so it need not wait for each fsync: a crash
            # can lose only the last documents, never leave one half-written
            conn.execute("SET LOCAL synchronous_commit = off")
            store.lock_source(conn, item.document.source)
            document_id = store.upsert_document(conn, item.document, item.content_hash)
            store.retire_chunks(conn, [document_id])
            chunk_ids = store.insert_chunks(conn, document_id, item.chunks, item.content_hash)
            store.insert_embeddings(conn, version, chunk_ids, vectors)


class _Writer:
    """Runs writes one after another on one thread, so the caller encodes the next batch
    meanwhile (the database and the model use different cores); at most one write waits.
    A write's error is raised at the next ``submit`` or at the end of the block."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aitl-ingest-writer")
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(write, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # the caller's error is the one to report
        finally:
            self._pool.shutdown(wait=True)
