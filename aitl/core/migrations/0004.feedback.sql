-- The agents' clicks: the training signal. One row per click, never updated or deleted;
-- a later click on the same thing points at the one it supersedes.

CREATE TABLE feedback_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,   -- a retry or a double click maps to one row
    kind            text        NOT NULL
                    CHECK (kind IN ('preference', 'adoption', 'relevance', 'missing_knowledge')),
    value           text        NOT NULL,
    ticket_ref      text        NOT NULL,          -- 'zendesk:123', 'ask:<uuid>'
    draft_set_id    bigint      NOT NULL REFERENCES rag_draft_sets (id),
    draft_ids       bigint[]    NOT NULL,          -- the drafts that were shown
    draft_id        bigint      REFERENCES rag_drafts (id),  -- the draft chosen or adopted
    chunk_ids       bigint[]    NOT NULL DEFAULT '{}',       -- the chunk judged or named
    subject         text        NOT NULL DEFAULT '',         -- the slot within the set
    agent_id        text        NOT NULL,          -- Slack user id
    rationale       jsonb       NOT NULL DEFAULT '{}',
    shown_at        timestamptz NOT NULL,
    clicked_at      timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    supersedes      bigint      REFERENCES feedback_events (id),
    source          text        NOT NULL DEFAULT 'slack',
    source_ref      jsonb       NOT NULL DEFAULT '{}',       -- channel, message ts, action ts
    CHECK (
        (kind = 'preference' AND value IN ('A', 'B', 'tie', 'both_bad'))
        OR (kind = 'adoption' AND value IN ('as_is', 'edited', 'not_used'))
        OR (kind = 'relevance' AND value IN ('relevant', 'not_relevant'))
        OR (kind = 'missing_knowledge' AND value IN ('article', 'url', 'note'))
    )
);
CREATE INDEX feedback_events_by_slot
    ON feedback_events (draft_set_id, kind, subject, agent_id, id DESC);
CREATE INDEX feedback_events_by_time ON feedback_events (clicked_at);
CREATE INDEX feedback_events_by_agent ON feedback_events (agent_id, clicked_at);

CREATE FUNCTION feedback_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'feedback_events is append-only: record a new event instead';
END;
$$;
CREATE TRIGGER feedback_events_append_only
    BEFORE UPDATE OR DELETE ON feedback_events
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_events_append_only();
