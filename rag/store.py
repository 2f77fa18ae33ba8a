"""The only module that writes SQL for the knowledge base (tables in migrations 0001)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from rag.memory import REUSED_REPLY
from rag.models import DraftSet, RetrievedChunk, SourceDocument


@dataclass(frozen=True)
class EmbeddingVersion:
    version: str
    model_path: str
    fingerprint: str
    dimension: int
    origin: str
    state: str
    created_at: datetime
    live_since: datetime | None
    backends: tuple[str, ...] = ()  # the inference backends that wrote its vectors


@dataclass(frozen=True)
class StoredDocument:
    id: int
    content_hash: str
    deleted: bool


@dataclass(frozen=True)
class ChunkText:
    chunk_id: int
    title: str
    text: str


# --- documents and chunks ----------------------------------------------------------------


def lock_source(conn: psycopg.Connection, source: str) -> None:
    """Serialise writers of one source for the rest of the transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('aitl.kb:' || %s))", (source,))


def find_document(conn: psycopg.Connection, source: str, external_id: str) -> StoredDocument | None:
    row = conn.execute(
        "SELECT id, content_hash, deleted_at IS NOT NULL FROM kb_documents"
        " WHERE source = %s AND external_id = %s",
        (source, external_id),
    ).fetchone()
    return StoredDocument(*row) if row else None


def document_hashes(conn: psycopg.Connection, source: str) -> dict[str, str]:
    """external_id → content hash of the source's live documents, to skip unchanged ones."""
    rows = conn.execute(
        "SELECT external_id, content_hash FROM kb_documents"
        " WHERE source = %s AND deleted_at IS NULL",
        (source,),
    ).fetchall()
    return dict(rows)


def relabel_documents(conn: psycopg.Connection, docs: Sequence[SourceDocument]) -> int:
    """Write unchanged documents' labels (audience, brand, metadata) where they differ: an
    article turned agent-only, or its segment renamed, needs no new chunks or vectors.
    Returns how many documents changed."""
    changed = 0
    for doc in docs:
        changed += conn.execute(
            """
            UPDATE kb_documents SET audience = %s, brand = %s, metadata = %s
            WHERE source = %s AND external_id = %s AND deleted_at IS NULL
              AND (audience, brand, metadata) IS DISTINCT FROM (%s, %s, %s::jsonb)
            """,
            (
                doc.audience,
                doc.brand,
                Jsonb(doc.metadata),
                doc.source,
                doc.external_id,
                doc.audience,
                doc.brand,
                Jsonb(doc.metadata),
            ),
        ).rowcount
    return changed


_UPSERT_DOCUMENT = """
    INSERT INTO kb_documents
        (source, external_id, title, body, url, locale, metadata, content_hash, updated_at,
         audience, brand)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (source, external_id) DO UPDATE SET
        title = excluded.title, body = excluded.body, url = excluded.url,
        locale = excluded.locale, metadata = excluded.metadata,
        content_hash = excluded.content_hash, updated_at = excluded.updated_at,
        audience = excluded.audience, brand = excluded.brand,
        ingested_at = now(), deleted_at = NULL
    RETURNING id
"""


def _document_row(doc: SourceDocument, content_hash: str) -> tuple:
    return (
        doc.source,
        doc.external_id,
        doc.title,
        doc.body,
        doc.url,
        doc.locale,
        Jsonb(doc.metadata),
        content_hash,
        doc.updated_at,
        doc.audience,
        doc.brand,
    )


def upsert_document(conn: psycopg.Connection, doc: SourceDocument, content_hash: str) -> int:
    row = conn.execute(_UPSERT_DOCUMENT, _document_row(doc, content_hash)).fetchone()
    return int(row[0])


def retire_chunks(conn: psycopg.Connection, document_ids: Sequence[int]) -> int:
    """Retire the documents' live chunks; their embeddings go, their text stays for events."""
    conn.execute(
        "DELETE FROM kb_chunk_embeddings WHERE chunk_id IN"
        " (SELECT id FROM kb_chunks WHERE document_id = ANY(%s) AND retired_at IS NULL)",
        (list(document_ids),),
    )
    cur = conn.execute(
        "UPDATE kb_chunks SET retired_at = now()"
        " WHERE document_id = ANY(%s) AND retired_at IS NULL",
        (list(document_ids),),
    )
    return cur.rowcount


def insert_chunks(
    conn: psycopg.Connection, document_id: int, texts: Sequence[str], document_hash: str
) -> list[int]:
    ids: list[int] = []
    with conn.cursor() as cur:
        for ordinal, text in enumerate(texts):
            cur.execute(
                "INSERT INTO kb_chunks (document_id, ordinal, text, document_hash)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (document_id, ordinal, text, document_hash),
            )
            ids.append(int(cur.fetchone()[0]))
    return ids


@dataclass(frozen=True)
class DocumentWrite:
    """A document to store with its chunks' texts, under its content hash."""

    document: SourceDocument
    content_hash: str
    chunks: Sequence[str]


def write_documents(
    conn: psycopg.Connection, version: str, writes: Sequence[DocumentWrite], vectors: np.ndarray
) -> list[int]:
    """Stores documents with their chunks and ``version``'s vectors (one row of ``vectors`` per
    chunk, in order) in a few statements, whatever their number: upserted documents, their
    previous chunks retired, new chunks and vectors added. The caller's transaction makes it
    all or nothing. Returns the documents' ids."""
    document_ids = _upsert_documents(conn, writes)
    retire_chunks(conn, document_ids)
    owners = [d for d, w in zip(document_ids, writes, strict=True) for _ in w.chunks]
    ordinals = [i for w in writes for i in range(len(w.chunks))]
    rows = conn.execute(
        "INSERT INTO kb_chunks (document_id, ordinal, text, document_hash)"
        " SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[])"
        " RETURNING id, document_id, ordinal",
        (
            owners,
            ordinals,
            [t for w in writes for t in w.chunks],
            [w.content_hash for w in writes for _ in w.chunks],
        ),
    ).fetchall()
    chunk_id = {(document, ordinal): chunk for chunk, document, ordinal in rows}
    chunk_ids = [chunk_id[key] for key in zip(owners, ordinals, strict=True)]
    insert_embeddings(conn, version, chunk_ids, vectors)
    return document_ids


def _upsert_documents(conn: psycopg.Connection, writes: Sequence[DocumentWrite]) -> list[int]:
    """``upsert_document`` for each, pipelined; a document named twice is refused (its chunks
    could not be told apart)."""
    if not writes:
        return []
    keys = {(w.document.source, w.document.external_id) for w in writes}
    if len(keys) != len(writes):
        raise ValueError("a document appears twice in one write")
    with conn.cursor() as cur:
        cur.executemany(
            _UPSERT_DOCUMENT,
            [_document_row(w.document, w.content_hash) for w in writes],
            returning=True,
        )
        ids = []
        while True:
            ids.append(int(cur.fetchone()[0]))  # type: ignore[index]
            if not cur.nextset():
                return ids


def soft_delete_missing(conn: psycopg.Connection, source: str, seen: Sequence[str]) -> list[str]:
    """Soft-delete the source's documents that were not seen in a full scan."""
    rows = conn.execute(
        "UPDATE kb_documents SET deleted_at = now()"
        " WHERE source = %s AND deleted_at IS NULL AND NOT (external_id = ANY(%s))"
        " RETURNING id, external_id",
        (source, list(seen)),
    ).fetchall()
    if rows:
        retire_chunks(conn, [r[0] for r in rows])
    return [r[1] for r in rows]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM kb_documents WHERE deleted_at IS NULL),
               (SELECT count(*) FROM kb_documents WHERE deleted_at IS NOT NULL),
               (SELECT count(*) FROM kb_chunks WHERE retired_at IS NULL),
               (SELECT count(*) FROM kb_chunks WHERE retired_at IS NOT NULL)
        """
    ).fetchone()
    return dict(
        zip(("documents", "deleted_documents", "chunks", "retired_chunks"), row, strict=True)
    )


# --- embedding versions ------------------------------------------------------------------

_VERSION_COLUMNS = (
    "version, model_path, fingerprint, dimension, origin, state, created_at, live_since, backends"
)


def _version(row: tuple) -> EmbeddingVersion:
    return EmbeddingVersion(*row[:-1], backends=tuple(row[-1] or ()))


def live_version(conn: psycopg.Connection) -> EmbeddingVersion | None:
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM kb_embedding_versions WHERE state = 'live'"
    ).fetchone()
    return _version(row) if row else None


def get_version(conn: psycopg.Connection, version: str) -> EmbeddingVersion | None:
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM kb_embedding_versions WHERE version = %s", (version,)
    ).fetchone()
    return _version(row) if row else None


def list_versions(conn: psycopg.Connection) -> list[EmbeddingVersion]:
    rows = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM kb_embedding_versions ORDER BY created_at"
    ).fetchall()
    return [_version(r) for r in rows]


def create_version(
    conn: psycopg.Connection,
    *,
    version: str,
    model_path: str,
    fingerprint: str,
    dimension: int,
    origin: str,
    state: str,
    hnsw_m: int,
    hnsw_ef_construction: int,
) -> None:
    """Register a version and give it its own partial HNSW cosine index."""
    conn.execute(
        "INSERT INTO kb_embedding_versions"
        " (version, model_path, fingerprint, dimension, origin, state, live_since)"
        " VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s = 'live' THEN now() END)",
        (version, model_path, fingerprint, dimension, origin, state, state),
    )
    create_index(
        conn, version, dimension=dimension, hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction
    )


def create_index(
    conn: psycopg.Connection,
    version: str,
    *,
    dimension: int,
    hnsw_m: int,
    hnsw_ef_construction: int,
    build_memory: str | None = None,
    parallel: bool = True,
) -> None:
    """The version's partial HNSW cosine index, unless it exists. ``build_memory`` (e.g.
    "256MB") is the ``maintenance_work_mem`` of a build over many rows: pgvector builds in
    memory while the graph fits, faster than spilling. Without ``parallel``, no worker
    processes (a parallel build shares that memory through /dev/shm, small in containers)."""
    if build_memory:
        conn.execute(
            sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(build_memory))
        )
    if not parallel:
        conn.execute("SET LOCAL max_parallel_maintenance_workers = 0")
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {index} ON kb_chunk_embeddings USING hnsw"
            " ((embedding::vector({dim})) vector_cosine_ops)"
            " WITH (m = {m}, ef_construction = {efc}) WHERE version = {version}"
        ).format(
            index=sql.Identifier(index_name(version)),
            dim=sql.Literal(dimension),
            m=sql.Literal(hnsw_m),
            efc=sql.Literal(hnsw_ef_construction),
            version=sql.Literal(version),
        )
    )


def index_lock(conn: psycopg.Connection, version: str) -> None:
    """Serialises building and dropping a version's index for the rest of the transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('aitl.kb.index:' || %s))", (version,))


def try_index_lock(conn: psycopg.Connection, version: str) -> bool:
    """``index_lock`` if no one holds it, without waiting."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext('aitl.kb.index:' || %s))", (version,)
    ).fetchone()
    return bool(row[0])


def hold_load(conn: psycopg.Connection, version: str) -> None:
    """Marks a load into ``version`` as running, until ``release_load`` or the connection ends
    (a session lock, shared between loads: it outlives the transaction)."""
    conn.execute("SELECT pg_advisory_lock_shared(hashtext('aitl.kb.load:' || %s))", (version,))


def release_load(conn: psycopg.Connection, version: str) -> None:
    conn.execute("SELECT pg_advisory_unlock_shared(hashtext('aitl.kb.load:' || %s))", (version,))


def no_load_running(conn: psycopg.Connection, version: str) -> bool:
    """True when no process is loading into ``version`` (see ``hold_load``)."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext('aitl.kb.load:' || %s))", (version,)
    ).fetchone()
    return bool(row[0])


def analyze_embeddings(conn: psycopg.Connection) -> None:
    """Refreshes the planner's statistics of the embeddings, stale after a bulk load (until
    autovacuum comes by), so it weighs the new index against a scan on today's row counts."""
    conn.execute("ANALYZE kb_chunk_embeddings")


def has_index(conn: psycopg.Connection, version: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (index_name(version),)).fetchone()
    return bool(row[0])


def drop_index(conn: psycopg.Connection, version: str, *, wait_s: float) -> bool:
    """Drops the version's HNSW index, waiting at most ``wait_s`` for the table lock (searches
    queue behind a waiting drop); False when it could not be had in time."""
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{wait_s}s")))
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(version)))
            )
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def index_name(version: str) -> str:
    return f"kb_emb_hnsw_{version}"


def set_version_state(conn: psycopg.Connection, version: str, state: str) -> None:
    conn.execute("UPDATE kb_embedding_versions SET state = %s WHERE version = %s", (state, version))


def switch_live(conn: psycopg.Connection, version: str) -> str | None:
    """Make ``version`` the live one in this transaction; the old live one stays as 'ready'."""
    conn.execute("LOCK TABLE kb_embedding_versions IN EXCLUSIVE MODE")
    old = live_version(conn)
    if old is not None:
        set_version_state(conn, old.version, "ready")
    conn.execute(
        "UPDATE kb_embedding_versions SET state = 'live', live_since = now() WHERE version = %s",
        (version,),
    )
    return old.version if old else None


def note_backend(conn: psycopg.Connection, version: str, backend: str) -> None:
    """Records that ``backend`` writes vectors into ``version`` (no write when it already did)."""
    conn.execute(
        "UPDATE kb_embedding_versions SET backends = array_append(backends, %s)"
        " WHERE version = %s AND NOT (%s = ANY (backends))",
        (backend, version, backend),
    )


def insert_embeddings(
    conn: psycopg.Connection, version: str, chunk_ids: Sequence[int], vectors: np.ndarray
) -> None:
    with conn.cursor().copy(
        "COPY kb_chunk_embeddings (version, chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int8", "vector"])
        for chunk_id, vector in zip(chunk_ids, vectors, strict=True):
            copy.write_row((version, chunk_id, vector))


def chunks_missing_embeddings(
    conn: psycopg.Connection, version: str, limit: int
) -> list[ChunkText]:
    rows = conn.execute(
        """
        SELECT c.id, d.title, c.text FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id
        WHERE c.retired_at IS NULL AND NOT EXISTS (
            SELECT 1 FROM kb_chunk_embeddings e WHERE e.version = %s AND e.chunk_id = c.id)
        ORDER BY c.id LIMIT %s
        """,
        (version, limit),
    ).fetchall()
    return [ChunkText(*r) for r in rows]


def stored_embeddings(
    conn: psycopg.Connection, version: str, chunk_ids: Sequence[int]
) -> dict[int, np.ndarray]:
    """The vectors a version holds for these chunks (absent ids are simply missing)."""
    rows = conn.execute(
        "SELECT chunk_id, embedding FROM kb_chunk_embeddings"
        " WHERE version = %s AND chunk_id = ANY(%s)",
        (version, list(chunk_ids)),
    ).fetchall()
    return {
        int(chunk_id): np.asarray(vector.to_numpy(), dtype=np.float32) for chunk_id, vector in rows
    }


def count_embeddings(conn: psycopg.Connection, version: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM kb_chunk_embeddings WHERE version = %s", (version,)
    ).fetchone()
    return int(row[0])


# --- search ------------------------------------------------------------------------------


def search(
    conn: psycopg.Connection,
    version: EmbeddingVersion,
    query: np.ndarray,
    *,
    k: int,
    ef_search: int,
    exact: bool = False,
    brand: str | None = None,
    locale: str | None = None,
) -> list[RetrievedChunk]:
    """Top-k chunks by cosine similarity: HNSW by default, a full scan when ``exact``.

    ``brand``: only documents of that brand or of no brand are candidates (each brand has its
    own Help Center). ``locale``: the requester's language (its first part: "de" matches
    "de-ch") is preferred among translations, not imposed: the nearest chunks of every language
    and the nearest of the requester's language are merged, and of one article's translations
    (``metadata.article_id``) only one document stays, the requester's language when it has
    one, else the best ranked; the k nearest of what stays are returned. So a German requester
    gets the German version of an article, and still an English-only article that answers
    better than any German one. Without either, every live chunk is a candidate, as before.

    A filter runs inside the HNSW scan with pgvector's iterative scan (relaxed order, bounded
    by ``hnsw.max_scan_tuples``), so a brand that is rare among the nearest chunks still gets
    k of its own rather than what survived of the first ``ef_search`` candidates.
    """
    conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(ef_search, k))))
    language = _language(locale)
    filtered = brand is not None or bool(language)
    if exact:
        conn.execute("SET LOCAL enable_indexscan = off")
    elif filtered:
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    base = [_BRAND_FILTER] if brand is not None else []
    params: dict[str, Any] = {"q": query, "k": k, "brand": brand, "language": language}
    if language:
        preferred = _nearest(conn, version, [*base, _SAME_LANGUAGE], params)
        rows = _one_translation(preferred + _nearest(conn, version, base, params))[:k]
    else:
        rows = _nearest(conn, version, base, params)
    if exact:
        conn.execute("RESET enable_indexscan")
    elif filtered:
        conn.execute("RESET hnsw.iterative_scan")
    return [
        RetrievedChunk(*r[:7], similarity=float(r[7]), audience=r[8], locale=r[9]) for r in rows
    ]


_ARTICLE = 10  # the row's article id (metadata.article_id), shared by its translations
_BRAND_FILTER = sql.SQL("(d.brand IS NULL OR d.brand = %(brand)s)")
_LANGUAGE_OF = "lower(split_part(replace(d.locale, '_', '-'), '-', 1))"
_SAME_LANGUAGE = sql.SQL(_LANGUAGE_OF + " = %(language)s")


def _language(locale: str | None) -> str:
    """The language part of a locale: "de-CH", "de_ch" and "de" are all "de"."""
    return (locale or "").replace("_", "-").split("-")[0].strip().lower()


def _one_translation(rows: list[tuple]) -> list[tuple]:
    """Of each article, only the first document seen (``rows`` come preferred first), each
    chunk once, nearest first."""
    kept: dict[str, int] = {}
    seen: set[int] = set()
    out = []
    for row in rows:
        article, document_id, chunk_id = row[_ARTICLE], row[1], row[0]
        if chunk_id in seen or (article and kept.setdefault(article, document_id) != document_id):
            continue
        seen.add(chunk_id)
        out.append(row)
    return sorted(out, key=lambda r: (-float(r[7]), r[0]))


def _nearest(
    conn: psycopg.Connection,
    version: EmbeddingVersion,
    filters: list[sql.Composable],
    params: dict[str, Any],
) -> list[tuple]:
    return conn.execute(_search_sql(version, filters), params).fetchall()


def _search_sql(version: EmbeddingVersion, filters: Sequence[sql.Composable]) -> sql.Composed:
    return sql.SQL(
        """
        SELECT c.id, d.id, d.title, c.text, d.url, d.source, d.external_id, 1 - hit.distance,
               d.audience, d.locale, d.metadata->>'article_id'
        FROM ({nearest}) hit
        JOIN kb_chunks c ON c.id = hit.chunk_id JOIN kb_documents d ON d.id = c.document_id
        ORDER BY hit.distance, c.id
        """
    ).format(nearest=_nearest_sql(version, filters))


def _nearest_sql(version: EmbeddingVersion, filters: Sequence[sql.Composable]) -> sql.Composed:
    """The k nearest chunks of ``version`` whose document passes ``filters`` (SQL on ``d``).

    Unfiltered, the index scan runs on the embeddings alone; filtered, the documents are
    joined under the scan's LIMIT, so an iterative scan goes on until k rows pass."""
    distance = sql.SQL("(e.embedding::vector({dim})) <=> %(q)s::vector({dim})").format(
        dim=sql.Literal(version.dimension)
    )
    joins = sql.SQL(
        " JOIN kb_chunks fc ON fc.id = e.chunk_id JOIN kb_documents d ON d.id = fc.document_id"
        if filters
        else ""
    )
    where = sql.SQL(" AND ").join(
        [sql.SQL("e.version = {}").format(sql.Literal(version.version)), *filters]
    )
    return sql.SQL(
        "SELECT e.chunk_id, {distance} AS distance FROM kb_chunk_embeddings e{joins}"
        " WHERE {where} ORDER BY {distance} LIMIT %(k)s"
    ).format(distance=distance, joins=joins, where=where)


def chunks_for_query(
    conn: psycopg.Connection,
    version: EmbeddingVersion,
    query: np.ndarray,
    chunk_ids: Sequence[int],
    *,
    brand: str | None = None,
    beside_documents: Sequence[int] = (),
) -> list[RetrievedChunk]:
    """The chunks of ``chunk_ids`` that a search could return, with their cosine similarity to
    ``query``, nearest first: live chunks of live documents embedded under ``version``, of
    ``brand`` or of no brand (when a brand is given), and not a translation of an article
    whose other document is among ``beside_documents`` (what the search already found)."""
    if not chunk_ids:
        return []
    rows = conn.execute(
        sql.SQL(
            """
            SELECT c.id, d.id, d.title, c.text, d.url, d.source, d.external_id,
                   1 - ((e.embedding::vector({dim})) <=> %(q)s::vector({dim})),
                   d.audience, d.locale
            FROM kb_chunk_embeddings e
            JOIN kb_chunks c ON c.id = e.chunk_id JOIN kb_documents d ON d.id = c.document_id
            WHERE e.version = %(version)s AND e.chunk_id = ANY(%(ids)s)
              AND c.retired_at IS NULL AND d.deleted_at IS NULL
              AND (%(brand)s::text IS NULL OR d.brand IS NULL OR d.brand = %(brand)s)
              AND NOT EXISTS (
                  SELECT 1 FROM kb_documents o
                  WHERE o.id = ANY(%(beside)s) AND o.id <> d.id
                    AND o.metadata->>'article_id' = d.metadata->>'article_id')
            ORDER BY 8 DESC, c.id
            """
        ).format(dim=sql.Literal(version.dimension)),
        {
            "q": query,
            "version": version.version,
            "ids": list(chunk_ids),
            "brand": brand,
            "beside": list(beside_documents),
        },
    ).fetchall()
    return [
        RetrievedChunk(*r[:7], similarity=float(r[7]), audience=r[8], locale=r[9]) for r in rows
    ]


def explain_search(
    conn: psycopg.Connection,
    version: EmbeddingVersion,
    query: np.ndarray,
    *,
    brand: str | None = None,
) -> str:
    """The plan of a search, so tests and benchmarks can check the HNSW index is used (also
    when the search is restricted to a brand)."""
    filters = [_BRAND_FILTER] if brand is not None else []
    plan = conn.execute(
        sql.SQL("EXPLAIN ") + _nearest_sql(version, filters),
        {"q": query, "k": 10, "brand": brand},
    ).fetchall()
    return "\n".join(r[0] for r in plan)


# --- drafts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDraft:
    id: int
    draft_set_id: int
    label: str
    text: str
    citations: list[int]
    producer: dict


def save_draft_set(
    conn: psycopg.Connection, ticket_ref: str, redacted_query: str, drafts: DraftSet
) -> int:
    """Record what was drafted; returns the draft set's id."""
    retrieved = [
        {
            "chunk_id": c.chunk_id,
            "similarity": round(c.similarity, 5),
            "rerank_score": c.rerank_score,
        }
        for c in drafts.retrieved
    ]
    set_id = conn.execute(
        "INSERT INTO rag_draft_sets (ticket_ref, query, retrieved, context, timings_ms)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (
            ticket_ref,
            redacted_query,
            Jsonb(retrieved),
            [c.chunk_id for c in drafts.context],
            Jsonb(drafts.timings_ms),
        ),
    ).fetchone()[0]
    for draft in drafts.drafts:
        conn.execute(
            "INSERT INTO rag_drafts (draft_set_id, label, text, citations, producer)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                set_id,
                draft.label,
                draft.text,
                [c.chunk_id for c in draft.citations],
                Jsonb(draft.producer),
            ),
        )
    return set_id


def drafts_of_set(conn: psycopg.Connection, draft_set_id: int) -> list[StoredDraft]:
    rows = conn.execute(
        "SELECT id, draft_set_id, label, text, citations, producer FROM rag_drafts"
        " WHERE draft_set_id = %s ORDER BY label",
        (draft_set_id,),
    ).fetchall()
    return [StoredDraft(*r) for r in rows]


@dataclass(frozen=True)
class ChunkRef:
    """What a surface shows of a cited chunk, even after the chunk was retired."""

    chunk_id: int
    document_id: int
    title: str
    url: str | None
    external_id: str
    text: str
    audience: str = "public"  # "internal": shown to agents, never quoted to customers


def chunk_refs(conn: psycopg.Connection, chunk_ids: Sequence[int]) -> dict[int, ChunkRef]:
    rows = conn.execute(
        "SELECT c.id, d.id, d.title, d.url, d.external_id, c.text, d.audience FROM kb_chunks c"
        " JOIN kb_documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
        (list(chunk_ids),),
    ).fetchall()
    return {r[0]: ChunkRef(*r) for r in rows}


def context_refs(conn: psycopg.Connection, draft_set_id: int) -> list[ChunkRef]:
    """The chunks a draft set's context held, in its order, with their documents' audience as
    it stands now (an article may have turned agent-only since)."""
    rows = conn.execute(
        "SELECT c.id, d.id, d.title, d.url, d.external_id, c.text, d.audience"
        " FROM rag_draft_sets s CROSS JOIN unnest(s.context) WITH ORDINALITY AS x(chunk_id, n)"
        " JOIN kb_chunks c ON c.id = x.chunk_id JOIN kb_documents d ON d.id = c.document_id"
        " WHERE s.id = %s ORDER BY x.n",
        (draft_set_id,),
    ).fetchall()
    return [ChunkRef(*r) for r in rows]


def draft_set_of_draft(conn: psycopg.Connection, draft_id: int) -> int | None:
    row = conn.execute("SELECT draft_set_id FROM rag_drafts WHERE id = %s", (draft_id,)).fetchone()
    return int(row[0]) if row else None


@dataclass(frozen=True)
class DraftSetInfo:
    """What training needs of a draft set: the (redacted) query, its context and its drafts."""

    id: int
    ticket_ref: str
    query: str
    context: list[int]
    created_at: datetime
    drafts: dict[str, StoredDraft]
    # chunk id → its similarity to the query when the card was drafted, for every passage the
    # retriever found (the judge reads a passage's place among the card's others from it)
    similarity: dict[int, float] = field(default_factory=dict)


def draft_set_infos(conn: psycopg.Connection, set_ids: Sequence[int]) -> dict[int, DraftSetInfo]:
    rows = conn.execute(
        "SELECT id, ticket_ref, query, context, created_at, retrieved FROM rag_draft_sets"
        " WHERE id = ANY(%s)",
        (list(set_ids),),
    ).fetchall()
    drafts: dict[int, dict[str, StoredDraft]] = {}
    for row in conn.execute(
        "SELECT id, draft_set_id, label, text, citations, producer FROM rag_drafts"
        " WHERE draft_set_id = ANY(%s)",
        (list(set_ids),),
    ).fetchall():
        drafts.setdefault(row[1], {})[row[2]] = StoredDraft(*row)
    return {
        r[0]: DraftSetInfo(*r[:5], drafts=drafts.get(r[0], {}), similarity=_similarities(r[5]))
        for r in rows
    }


def _similarities(retrieved: list[dict[str, Any]]) -> dict[int, float]:
    return {
        int(c["chunk_id"]): float(c["similarity"])
        for c in retrieved or ()
        if c.get("similarity") is not None
    }


@dataclass(frozen=True)
class DraftSetStamp:
    """A draft set as the digest counts it: which ticket, and when it was drafted."""

    id: int
    ticket_ref: str
    created_at: datetime


def draft_sets_created(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> list[DraftSetStamp]:
    """The draft sets created in [start, end), oldest first."""
    rows = conn.execute(
        "SELECT id, ticket_ref, created_at FROM rag_draft_sets"
        " WHERE created_at >= %s AND created_at < %s ORDER BY id",
        (start, end),
    ).fetchall()
    return [DraftSetStamp(*row) for row in rows]


def challenger_labels(conn: psycopg.Connection, set_ids: Sequence[int]) -> dict[int, str]:
    """Draft set → the label (A or B) of its challenger's draft, for the sets among ``set_ids``
    drafted by the champion and the challenger generator, one draft each: the online duels
    (a reply reused from a similar ticket, in the challenger's role, is not a generator's)."""
    rows = conn.execute(
        """
        SELECT draft_set_id, min(label) FILTER (WHERE producer->>'role' = 'challenger')
        FROM rag_drafts WHERE draft_set_id = ANY(%s)
        GROUP BY draft_set_id
        HAVING count(*) FILTER (WHERE producer->>'role' = 'champion') = 1
           AND count(*) FILTER (WHERE producer->>'role' = 'challenger') = 1
           AND count(*) FILTER (WHERE producer->>'generator' = %s) = 0
        """,
        (list(set_ids), REUSED_REPLY),
    ).fetchall()
    return dict(rows)


@dataclass(frozen=True)
class DuelSet:
    """A draft set of one duel: the champion's draft against the challenger's."""

    draft_set_id: int
    champion_draft: int
    challenger_draft: int
    challenger_label: str  # "A" or "B"


def duel_sets(conn: psycopg.Connection, champion: str, challenger: str) -> list[DuelSet]:
    """Every draft set where generator ``champion`` drafted one reply and ``challenger`` the
    other, in their roles (as recorded on the drafts), oldest first."""
    rows = conn.execute(
        """
        SELECT draft_set_id,
               min(id) FILTER (WHERE producer->>'role' = 'champion'),
               min(id) FILTER (WHERE producer->>'role' = 'challenger'),
               min(label) FILTER (WHERE producer->>'role' = 'challenger')
        FROM rag_drafts
        WHERE draft_set_id IN (
            SELECT draft_set_id FROM rag_drafts
            WHERE producer->>'role' = 'challenger' AND producer->>'generator' = %(challenger)s)
        GROUP BY draft_set_id
        HAVING count(*) FILTER (WHERE producer->>'role' = 'champion'
                                  AND producer->>'generator' = %(champion)s) = 1
           AND count(*) FILTER (WHERE producer->>'role' = 'challenger'
                                  AND producer->>'generator' = %(challenger)s) = 1
        ORDER BY draft_set_id
        """,
        {"champion": champion, "challenger": challenger},
    ).fetchall()
    return [DuelSet(*row) for row in rows]


def live_chunk_ids_of_documents(conn: psycopg.Connection, external_ids: Sequence[str]) -> set[int]:
    """The live chunks of documents named by external id (a ticket's expected articles)."""
    rows = conn.execute(
        "SELECT c.id FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
        " WHERE d.external_id = ANY(%s) AND c.retired_at IS NULL",
        (list(external_ids),),
    ).fetchall()
    return {r[0] for r in rows}


def live_chunk_texts(conn: psycopg.Connection) -> list[tuple[int, str, str]]:
    """Every live chunk as (id, title, text): the corpus an offline evaluation searches."""
    return conn.execute(
        "SELECT c.id, d.title, c.text FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
        " WHERE c.retired_at IS NULL AND d.deleted_at IS NULL ORDER BY c.id"
    ).fetchall()
