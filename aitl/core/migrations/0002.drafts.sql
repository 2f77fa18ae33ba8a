-- Every pair of drafts the pipeline produced, with what it retrieved and what made it.
-- Feedback events (Slack) and write-backs point at these rows; nothing here is updated.

CREATE TABLE rag_draft_sets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_ref   text        NOT NULL,              -- e.g. 'zendesk:123' or 'adhoc:<uuid>'
    query        text        NOT NULL,              -- redacted copy of the retrieval query
    retrieved    jsonb       NOT NULL,              -- [{chunk_id, similarity, rerank_score}]
    context      bigint[]    NOT NULL,              -- chunk ids given to the generators
    timings_ms   jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rag_draft_sets_by_ticket ON rag_draft_sets (ticket_ref, created_at);

CREATE TABLE rag_drafts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draft_set_id bigint      NOT NULL REFERENCES rag_draft_sets (id),
    label        text        NOT NULL CHECK (label IN ('A', 'B')),
    text         text        NOT NULL,
    citations    bigint[]    NOT NULL,
    producer     jsonb       NOT NULL,
    UNIQUE (draft_set_id, label)
);
