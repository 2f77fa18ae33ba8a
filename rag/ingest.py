"""Idempotent ingest: unchanged documents skipped by hash, changed ones re-chunked and
re-embedded, removed ones soft-deleted. Each document commits on its own, so a failure
never leaves one half-written and never loses what was stored before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from aitl.core.db import Database
from rag import loaders, store
from rag.chunking import Chunker, content_hash, embedding_text
from rag.models import SourceDocument
from rag.versions import EmbeddingVersions

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
        batch_documents: int = 32,
    ) -> None:
        self.db = db
        self.versions = versions
        self.chunker = chunker
        self.batch_documents = batch_documents

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
        """Ingest documents of one source; batches share one embedding call, not a transaction."""
        report = report or IngestReport()
        version, embedder = self.versions.live_or_bootstrap()
        with self.db.connection() as conn:
            known = store.document_hashes(conn, source)
        iterator = iter(documents)
        while batch := list(islice(iterator, self.batch_documents)):
            prepared = self._prepare(batch, known, report, force)
            self._relabel(batch, prepared, report)
            texts = [embedding_text(p.document.title, c) for p in prepared for c in p.chunks]
            vectors = embedder.encode(texts)
            offset = 0
            for item in prepared:
                n = len(item.chunks)
                self._commit(item, version.version, vectors[offset : offset + n])
                offset += n
                report.chunks += n
                report.added += item.is_new
                report.updated += not item.is_new
        return report

    def _relabel(
        self, batch: list[SourceDocument], prepared: list[_Prepared], report: IngestReport
    ) -> None:
        rewritten = {p.document.external_id for p in prepared}
        unchanged = [d for d in batch if d.external_id not in rewritten]
        if unchanged:
            with self.db.connection() as conn:
                report.relabelled += store.relabel_documents(conn, unchanged)

    def _prepare(
        self, batch: list[SourceDocument], known: dict[str, str], report: IngestReport, force: bool
    ) -> list[_Prepared]:
        prepared = []
        for doc in batch:
            digest = content_hash(doc)
            if not force and known.get(doc.external_id) == digest:
                report.unchanged += 1
                continue
            chunks = self.chunker.split(doc)
            prepared.append(_Prepared(doc, digest, chunks, doc.external_id not in known))
            known[doc.external_id] = digest
        return prepared

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
