-- Knowledge base: documents, their chunks, and embeddings stored per embedding-model version
-- so that a retrained retriever can be built beside the live one (blue/green).

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE kb_documents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text        NOT NULL,
    external_id   text        NOT NULL,
    title         text        NOT NULL,
    body          text        NOT NULL,
    url           text,
    locale        text        NOT NULL DEFAULT 'en',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    content_hash  text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    UNIQUE (source, external_id)
);

-- Chunks are never rewritten: a changed document retires its old chunks (events keep
-- pointing at what the agent actually saw) and gets new ones.
CREATE TABLE kb_chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id   bigint      NOT NULL REFERENCES kb_documents (id),
    ordinal       integer     NOT NULL,
    text          text        NOT NULL,
    document_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE INDEX kb_chunks_live_by_document ON kb_chunks (document_id) WHERE retired_at IS NULL;

CREATE TABLE kb_embedding_versions (
    version      text        PRIMARY KEY CHECK (version ~ '^[a-z0-9_]{1,48}$'),
    model_path   text        NOT NULL,
    fingerprint  text        NOT NULL,
    dimension    integer     NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    origin       text        NOT NULL CHECK (origin IN ('settings', 'trained')),
    state        text        NOT NULL CHECK (state IN ('building', 'ready', 'live', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    live_since   timestamptz
);
CREATE UNIQUE INDEX kb_embedding_versions_one_live ON kb_embedding_versions ((true))
    WHERE state = 'live';

-- One row per (version, live chunk). Each version gets its own partial HNSW index on
-- embedding::vector(dimension), created with the version (see rag/store.py).
CREATE TABLE kb_chunk_embeddings (
    version   text    NOT NULL REFERENCES kb_embedding_versions (version),
    chunk_id  bigint  NOT NULL REFERENCES kb_chunks (id),
    embedding vector  NOT NULL,
    PRIMARY KEY (version, chunk_id)
);
CREATE INDEX kb_chunk_embeddings_by_chunk ON kb_chunk_embeddings (chunk_id);
