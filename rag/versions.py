"""Embedding versions: which model's vectors are live, and blue/green rebuilds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from aitl.core.db import Database
from rag import exceptions, store
from rag.chunking import embedding_text
from rag.embedding import Embedder, version_slug

Progress = Callable[[int, int], None]
# chunk id → (the text that was embedded, its vector): vectors computed elsewhere, e.g. by an
# offline evaluation of the same model, reused only where the chunk's text is still the same
KnownVectors = Mapping[int, tuple[str, np.ndarray]]


@dataclass(frozen=True)
class IndexSettings:
    """What the versions need from Settings (kept small so rag stays easy to test)."""

    embedding_model: str
    batch_size: int
    hnsw_m: int
    hnsw_ef_construction: int


def base_version_name(model_dir: Path) -> str:
    """``base_<model>``, named after the model folder (or its parent when that is generic)."""
    name = model_dir.parent.name if model_dir.name in ("model", "models") else model_dir.name
    return version_slug(f"base_{name}")


class EmbeddingVersions:
    """Finds the live embedding version and the model that serves it; builds new ones."""

    def __init__(self, db: Database, settings: IndexSettings) -> None:
        self.db = db
        self.settings = settings
        self._embedders: dict[str, Embedder] = {}

    def embedder_for(self, version: store.EmbeddingVersion) -> Embedder:
        """The model behind a version, checked against what the index was built with."""
        if version.version in self._embedders:
            return self._embedders[version.version]
        if version.origin == "settings":
            embedder = self._embedder(self.settings.embedding_model, "AITL_EMBEDDING_MODEL")
            self._check(embedder, version, "AITL_EMBEDDING_MODEL")
        else:
            embedder = self._embedder(version.model_path, f"model of version {version.version}")
            self._check(embedder, version, f"model of version {version.version}")
        self._embedders[version.version] = embedder
        return embedder

    def live(self) -> tuple[store.EmbeddingVersion, Embedder]:
        with self.db.connection() as conn:
            version = store.live_version(conn)
        if version is None:
            raise exceptions.NoLiveEmbeddingVersion()
        return version, self.embedder_for(version)

    def live_or_bootstrap(self) -> tuple[store.EmbeddingVersion, Embedder]:
        """The live version, creating the first one from AITL_EMBEDDING_MODEL on a new install."""
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('aitl.kb.versions'))")
            version = store.live_version(conn)
            if version is None:
                embedder = self._embedder(self.settings.embedding_model, "AITL_EMBEDDING_MODEL")
                name = base_version_name(Path(embedder.path))
                self._create(conn, name, embedder, origin="settings", state="live")
                version = store.live_version(conn)
        assert version is not None
        return version, self.embedder_for(version)

    def build(
        self,
        name: str,
        model_path: str,
        *,
        progress: Progress | None = None,
        known: KnownVectors | None = None,
    ) -> str:
        """Embed every live chunk with another model into a new version, not yet live.

        ``known`` vectors are the same model's, so a chunk whose text has not changed since
        they were computed is not encoded again.
        """
        name = version_slug(name)
        embedder = self._embedder(model_path, "model path")
        with self.db.connection() as conn:
            if store.get_version(conn, name) is not None:
                raise exceptions.EmbeddingError(f"embedding version {name!r} already exists")
            self._create(conn, name, embedder, origin="trained", state="building")
        self._embedders[name] = embedder
        self.fill_missing(name, progress=progress, known=known)
        with self.db.connection() as conn:
            store.set_version_state(conn, name, "ready")
        return name

    def switch(
        self,
        name: str,
        *,
        progress: Progress | None = None,
        then: Callable[[psycopg.Connection], None] | None = None,
    ) -> str | None:
        """Make a built version live at once, after embedding chunks ingested meanwhile.

        ``then`` runs in the switching transaction, so what records the switch (the model
        registry) commits with it or not at all.
        """
        with self.db.connection() as conn:
            version = store.get_version(conn, name)
        if version is None or version.state not in ("ready", "live"):
            raise exceptions.EmbeddingError(f"embedding version {name!r} is not ready to go live")
        self.fill_missing(name, progress=progress)
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('aitl.kb.versions'))")
            # chunks ingested between fill_missing and the lock are embedded inside it
            self._fill_in(conn, name, self.embedder_for(version), batch=self.settings.batch_size)
            old = store.switch_live(conn, name)
            if then is not None:
                then(conn)
            return old

    def fill_missing(
        self, name: str, *, progress: Progress | None = None, known: KnownVectors | None = None
    ) -> int:
        """Embed live chunks that this version lacks; batch by batch, each batch committed."""
        with self.db.connection() as conn:
            version = store.get_version(conn, name)
            total = store.counts(conn)["chunks"]
            done = store.count_embeddings(conn, name)
        if version is None:
            raise exceptions.EmbeddingError(f"no embedding version {name!r}")
        embedder = self.embedder_for(version)
        added = 0
        while True:
            with self.db.connection() as conn:
                n = self._fill_in(
                    conn, name, embedder, batch=max(self.settings.batch_size, 256), known=known
                )
            if n == 0:
                return added
            added += n
            if progress:
                progress(min(done + added, total), total)

    @staticmethod
    def _fill_in(
        conn, name: str, embedder: Embedder, *, batch: int, known: KnownVectors | None = None
    ) -> int:
        missing = store.chunks_missing_embeddings(conn, name, batch)
        if not missing:
            return 0
        texts = [embedding_text(c.title, c.text) for c in missing]
        vectors = np.zeros((len(missing), embedder.dimension), dtype=np.float32)
        fresh = []
        for i, (chunk, text) in enumerate(zip(missing, texts, strict=True)):
            was, vector = (known or {}).get(chunk.chunk_id, ("", None))
            if vector is not None and was == text:
                vectors[i] = vector
            else:
                fresh.append(i)
        if fresh:
            vectors[fresh] = embedder.encode([texts[i] for i in fresh])
        store.insert_embeddings(conn, name, [c.chunk_id for c in missing], vectors)
        return len(missing)

    def _create(self, conn, name: str, embedder: Embedder, *, origin: str, state: str) -> None:
        store.create_version(
            conn,
            version=name,
            model_path=str(embedder.path),
            fingerprint=embedder.fingerprint,
            dimension=embedder.dimension,
            origin=origin,
            state=state,
            hnsw_m=self.settings.hnsw_m,
            hnsw_ef_construction=self.settings.hnsw_ef_construction,
        )

    def _embedder(self, path: str, setting: str) -> Embedder:
        return Embedder(path, setting=setting, batch_size=self.settings.batch_size)

    @staticmethod
    def _check(embedder: Embedder, version: store.EmbeddingVersion, setting: str) -> None:
        if embedder.dimension != version.dimension:
            raise exceptions.EmbeddingDimensionMismatch(
                f"{setting}={embedder.path} makes {embedder.dimension}-dimensional vectors but "
                f"the live index {version.version!r} holds {version.dimension}; point the "
                f"setting back at {version.model_path} or build a new index with "
                "`aitl kb reembed --model PATH`"
            )
        if embedder.fingerprint != version.fingerprint:
            raise exceptions.EmbeddingModelChanged(
                f"{setting}={embedder.path} is not the model the index {version.version!r} was "
                f"built with ({version.model_path}); build a new index with "
                "`aitl kb reembed --model PATH`"
            )
