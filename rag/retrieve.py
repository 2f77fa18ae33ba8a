"""First stage: nearest chunks from pgvector under the live embedding version."""

from __future__ import annotations

from aitl.core.db import Database
from rag import store
from rag.models import RetrievedChunk
from rag.versions import EmbeddingVersions


class Retriever:
    def __init__(self, db: Database, versions: EmbeddingVersions, *, ef_search: int) -> None:
        self.db = db
        self.versions = versions
        self.ef_search = ef_search

    def search(self, text: str, k: int, *, exact: bool = False) -> list[RetrievedChunk]:
        version, embedder = self.versions.live()
        query = embedder.encode([text])[0]
        with self.db.connection() as conn:
            return store.search(conn, version, query, k=k, ef_search=self.ef_search, exact=exact)

    def describe(self) -> dict[str, str]:
        version, embedder = self.versions.live()
        return {"embedding_version": version.version, "embedding_model": str(embedder.path)}
