"""First stage: nearest chunks from pgvector under the live embedding version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aitl.core.db import Database
from rag import store
from rag.models import RetrievedChunk
from rag.versions import EmbeddingVersions


@dataclass(frozen=True)
class QueryVector:
    """A query as the live index sees it: its vector and the version that made it, so the
    feedback memory is asked under the same version the search ran on."""

    version: store.EmbeddingVersion
    vector: np.ndarray


class Retriever:
    def __init__(
        self,
        db: Database,
        versions: EmbeddingVersions,
        *,
        ef_search: int,
        share_across_brands: bool = False,
    ) -> None:
        self.db = db
        self.versions = versions
        self.ef_search = ef_search
        # AITL_KB_SHARE_ACROSS_BRANDS: every brand's tickets may use every brand's knowledge
        self.share_across_brands = share_across_brands

    def search(
        self,
        text: str,
        k: int,
        *,
        exact: bool = False,
        brand: str | None = None,
        locale: str | None = None,
    ) -> list[RetrievedChunk]:
        """The k chunks nearest to ``text``.

        For a ticket, ``brand`` keeps the search to that brand's knowledge and the knowledge
        of no brand (unless knowledge is shared across brands), and ``locale`` (the
        requester's) prefers documents in the requester's language: those are searched
        first and the rest of k is topped up from other languages, and of one article's
        translations (same ``metadata.article_id``) the one in the requester's language is
        kept. Without them (``/aitl ask``, the flywheel's evaluation) every chunk is a
        candidate. See ``rag.store.search``.
        """
        return self.search_vector(self.encode(text), k, exact=exact, brand=brand, locale=locale)

    def encode(self, text: str) -> QueryVector:
        """``text`` embedded once by the live version's model, for a search and the memory."""
        version, embedder = self.versions.live()
        return QueryVector(version, embedder.encode([text])[0])

    def search_vector(
        self,
        query: QueryVector,
        k: int,
        *,
        exact: bool = False,
        brand: str | None = None,
        locale: str | None = None,
    ) -> list[RetrievedChunk]:
        """``search`` for a query already encoded."""
        with self.db.connection() as conn:
            return store.search(
                conn,
                query.version,
                query.vector,
                k=k,
                ef_search=self.ef_search,
                exact=exact,
                brand=self._brand(brand),
                locale=locale,
            )

    def chunks(
        self,
        query: QueryVector,
        chunk_ids: Sequence[int],
        *,
        brand: str | None = None,
        beside: Sequence[RetrievedChunk] = (),
    ) -> list[RetrievedChunk]:
        """Chunks named by id (the feedback memory's suggestions), with their similarity to
        the query, on the terms of ``search``: live, of the ticket's brand or of none, and not
        another translation of an article ``beside`` already holds. See
        ``rag.store.chunks_for_query``."""
        with self.db.connection() as conn:
            return store.chunks_for_query(
                conn,
                query.version,
                query.vector,
                chunk_ids,
                brand=self._brand(brand),
                beside_documents=[c.document_id for c in beside],
            )

    def _brand(self, brand: str | None) -> str | None:
        return None if self.share_across_brands else brand

    def prepare(self) -> None:
        """Exports the live model for the configured backend, at start-up (seconds, once)."""
        self.versions.prepare_live()

    def describe(self) -> dict[str, str]:
        version, embedder = self.versions.live()
        return {
            "embedding_version": version.version,
            "embedding_model": str(embedder.path),
            "encoder_backend": embedder.backend,
        }
