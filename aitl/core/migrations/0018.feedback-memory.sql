-- The feedback memory: the judged relevance marks and missing-knowledge picks standing now, each
-- with the embedding of its ticket's (redacted) query under the live embedding version, so a new
-- ticket's nearest annotated tickets can vote on its sources before any retrain. Rebuilt from
-- feedback_events by `flywheel.memory.MemoryBuilder.refresh` (rows come and go; the events stay).
-- Each embedding version gets its own partial HNSW index when its first entry is stored (as the
-- knowledge base's do, see flywheel/store.py memory_index_name).
CREATE TABLE feedback_memory (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      bigint      NOT NULL UNIQUE REFERENCES feedback_events (id),
    kind          text        NOT NULL CHECK (kind IN ('relevant', 'not_relevant', 'missing')),
    chunk_id      bigint      NOT NULL,          -- the passage marked or named as missing
    agent_id      text        NOT NULL,
    draft_set_id  bigint      NOT NULL,
    ticket_ref    text        NOT NULL,
    clicked_at    timestamptz NOT NULL,
    version       text        NOT NULL,          -- the embedding version of ``embedding``
    embedding     vector      NOT NULL,          -- the draft set's redacted query
    brand         text,                          -- the ticket's brand, when known
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_memory_by_version ON feedback_memory (version);

-- Each refresh: what it found, for `aitl flywheel memory` and the cycle's report.
CREATE TABLE feedback_memory_refreshes (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version     text,                            -- None: no live embedding version yet
    entries     integer     NOT NULL,
    added       integer     NOT NULL,
    removed     integer     NOT NULL,
    dropped     integer     NOT NULL DEFAULT 0,  -- clicks the judge left out
    seconds     real        NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
