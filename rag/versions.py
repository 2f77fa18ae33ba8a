"""Embedding versions: which model's vectors are live, and blue/green rebuilds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from aitl.core.db import Database
from rag import encoders, exceptions, store
from rag.chunking import embedding_text
from rag.embedding import Embedder, version_slug

log = logging.getLogger(__name__)
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
    backend: encoders.BackendSettings = encoders.TORCH
    # vectors a load writes into a non-empty version before it may set the version's index
    # aside (see ``IndexLoad``)
    bulk_load_min: int = 5_000


def base_version_name(model_dir: Path) -> str:
    """``base_<model>``, named after the model folder (or its parent when that is generic)."""
    name = model_dir.parent.name if model_dir.name in ("model", "models") else model_dir.name
    return version_slug(f"base_{name}")


# how long setting an index aside may wait for its table lock (searches queue behind it)
INDEX_LOCK_WAIT_S = 2.0
# the most vectors a live version may be searched by exact scan during a bulk load
LIVE_SCAN_MAX = 100_000


class IndexLoad:
    """Vectors written into one version by one ingest or fill, and what becomes of its index.

    pgvector inserts each row into the HNSW graph as it comes; a build over rows already stored
    costs far less a row (measured at 10k–25k rows on 2 cores: ~2.7 ms of Postgres CPU a row
    inserted, ~0.5 ms a row built). So a load into an empty version sets the version's index
    aside and builds it once at the end, and so does a load into a non-empty one once it has
    written half as many vectors as the version held at its start (and ``bulk_load_min``) —
    for the live version only while it holds at most ``LIVE_SCAN_MAX`` vectors, since drafts
    search it by exact scan meanwhile (measured at 50k: 35 ms a search against 15 ms on the
    index, on a loaded 2-core machine; at a million it would be seconds):
    should the load go on as long again, rebuilding everything is then the cheaper way (break
    even near a third), and should it stop there, the rebuild costs about half of what it
    wrote. Meanwhile a search of the version is an exact scan of what is stored: the same
    results, slower. However the load ends, the index is built; a process that dies mid-load
    leaves it to the next load or start-up (``EmbeddingVersions.ensure_index``).
    """

    def __init__(
        self,
        versions: EmbeddingVersions,
        version: str,
        *,
        held: int,
        indexed: bool,
        live: bool = False,
    ) -> None:
        self.versions = versions
        self.version = version
        self.held = held  # vectors in the version when the load started
        self.indexed = indexed
        self.live = live
        self.written = 0
        self._may_set_aside = True

    def wrote(self, vectors: int) -> None:
        """Counts vectors committed; sets the index aside once the load is large against the
        version (see the class)."""
        self.written += vectors
        threshold = max(self.held // 2, self.versions.settings.bulk_load_min)
        scannable = not self.live or self.held + self.written <= LIVE_SCAN_MAX
        if self.indexed and self._may_set_aside and self.written >= threshold and scannable:
            self.set_aside()

    def set_aside(self) -> None:
        """Drops the index (once per load) unless another load holds it or searches hold the
        table for longer than ``INDEX_LOCK_WAIT_S``: then the load goes on row by row."""
        self._may_set_aside = False
        with self.versions.db.connection() as conn:
            if not store.try_index_lock(conn, self.version):
                return
            if store.drop_index(conn, self.version, wait_s=INDEX_LOCK_WAIT_S):
                self.indexed = False
                log.info("index of %s set aside for a bulk load", self.version)

    def finish(self) -> None:
        if not self.indexed:
            self.versions.ensure_index(self.version)
            self.indexed = True


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
                embedder.prepare()  # a new install: the backend is exported before any vector
                name = base_version_name(Path(embedder.path))
                self._create(conn, name, embedder, origin="settings", state="live")
                version = store.live_version(conn)
        assert version is not None
        return version, self.embedder_for(version)

    @contextmanager
    def loading(self, name: str) -> Iterator[IndexLoad]:
        """A load of vectors into ``name`` (see ``IndexLoad``); its index exists afterwards.
        While it runs, start-up leaves the index it set aside alone (``prepare_live``)."""
        with self.db.connection() as guard:
            store.hold_load(guard, name)
            guard.commit()
            try:
                with self._load(name) as load:
                    yield load
            finally:
                store.release_load(guard, name)

    @contextmanager
    def _load(self, name: str) -> Iterator[IndexLoad]:
        with self.db.connection() as conn:
            held = store.count_embeddings(conn, name)
            indexed = store.has_index(conn, name)
            version = store.get_version(conn, name)
        live = version is not None and version.state == "live"
        load = IndexLoad(self, name, held=held, indexed=indexed, live=live)
        if held == 0 and indexed:
            load.set_aside()
        try:
            yield load
        except BaseException:
            try:
                load.finish()
            except Exception:  # the load's own failure is the one to report
                log.exception("index of %s not rebuilt after a failed load", name)
            raise
        load.finish()

    def ensure_index(self, name: str, *, unless_loading: bool = False) -> bool:
        """Builds the version's HNSW index if a load set it aside; True when it was built.
        ``unless_loading``: not while a load runs (it builds the index when it ends)."""
        with self.db.connection() as conn:
            if unless_loading and not store.no_load_running(conn, name):
                return False
            store.index_lock(conn, name)
            if store.has_index(conn, name):
                return False
            version = store.get_version(conn, name)
            if version is None:
                return False
            rows = store.count_embeddings(conn, name)
            started = time.perf_counter()
            index = {
                "dimension": version.dimension,
                "hnsw_m": self.settings.hnsw_m,
                "hnsw_ef_construction": self.settings.hnsw_ef_construction,
            }
            memory = build_memory(rows, version.dimension, self.settings.hnsw_m)
            try:
                with conn.transaction():
                    store.create_index(conn, name, **index, build_memory=memory)
            except psycopg.Error as exc:  # e.g. /dev/shm too small for a parallel build
                log.warning("index build of %s failed (%s); building it on one process", name, exc)
                store.create_index(conn, name, **index, parallel=False)
            store.analyze_embeddings(conn)
        log.info(
            "index of %s built over %d vectors in %.1f s", name, rows, time.perf_counter() - started
        )
        return True

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
        embedder.prepare(prefer=self._live_backends())
        with self.db.connection() as conn:
            if store.get_version(conn, name) is not None:
                raise exceptions.EmbeddingError(f"embedding version {name!r} already exists")
            self._create(conn, name, embedder, origin="trained", state="building")
        self._embedders[name] = embedder
        self.fill_missing(name, progress=progress, known=known)
        with self.db.connection() as conn:
            store.set_version_state(conn, name, "ready")
        return name

    def _live_backends(self) -> list[str]:
        """The backend the live model runs on: a model trained from it is tried there first."""
        try:
            return [self.live()[1].backend]
        except exceptions.RagError:
            return []

    def prepare_live(self) -> encoders.Choice | None:
        """Exports the live model for the configured backend if that was not done, and builds
        its index if a load that died left it aside (start-up)."""
        try:
            version, embedder = self.live()
        except exceptions.NoLiveEmbeddingVersion:
            return None
        self.ensure_index(version.version, unless_loading=True)  # a load that died left it aside
        return embedder.prepare()

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
        with self.loading(name) as load:
            while True:
                with self.db.connection() as conn:
                    n = self._fill_in(
                        conn, name, embedder, batch=max(self.settings.batch_size, 256), known=known
                    )
                if n == 0:
                    return added
                added += n
                load.wrote(n)
                if progress:
                    progress(min(done + added, total), total)

    @staticmethod
    def _fill_in(
        conn, name: str, embedder: Embedder, *, batch: int, known: KnownVectors | None = None
    ) -> int:
        missing = store.chunks_missing_embeddings(conn, name, batch)
        if not missing:
            return 0
        store.note_backend(conn, name, embedder.backend)
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
        settings = self.settings
        return Embedder(
            path, setting=setting, batch_size=settings.batch_size, backend=settings.backend
        )

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


def build_memory(rows: int, dimension: int, hnsw_m: int) -> str:
    """``maintenance_work_mem`` for building an index over ``rows`` vectors: the graph in
    memory with room to spare (pgvector's estimate is close to vector + 2·m neighbours of
    each element), between Postgres' default 64 MB and 1 GB."""
    per_row = dimension * 4 + hnsw_m * 2 * 16 + 256
    megabytes = int(rows * per_row * 1.3 / 2**20) + 1
    return f"{min(max(megabytes, 64), 1024)}MB"
