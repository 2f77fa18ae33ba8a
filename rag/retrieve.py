"""First stage: nearest chunks from pgvector under the live embedding version."""

from __future__ import annotations

from aitl.core.db import Database
from rag import store
from rag.models import RetrievedChunk
from rag.versions import EmbeddingVersions


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
        version, embedder = self.versions.live()
        query = embedder.encode([text])[0]
        with self.db.connection() as conn:
            return store.search(
                conn,
                version,
                query,
                k=k,
                ef_search=self.ef_search,
                exact=exact,
                brand=None if self.share_across_brands else brand,
                locale=locale,
            )

    def describe(self) -> dict[str, str]:
        version, embedder = self.versions.live()
        return {"embedding_version": version.version, "embedding_model": str(embedder.path)}
