-- Replies worth reusing (issue 32 point 3): for each card whose drafts an agent used (as is or
-- edited) and the judge kept, the reply as it went out (the one sent in Zendesk where the
-- connector compared it, else the agent's edited text, else the draft used as it was),
-- PII-redacted and with its own ticket's values turned back into Liquid placeholders, with the
-- embedding of the card's (redacted) query under the live embedding version. A near-identical
-- new ticket is offered it as a draft of its own kind. Rebuilt from feedback_events by
-- `flywheel.memory.MemoryBuilder.refresh` with the other entries (rows come and go; the events
-- stay). Each embedding version gets its own partial HNSW index, as feedback_memory's do.
CREATE TABLE memory_replies (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draft_set_id  bigint      NOT NULL UNIQUE REFERENCES rag_draft_sets (id),  -- one per card
    events        bigint[]    NOT NULL,          -- the kept adoptions it stands on: its identity
    ticket_ref    text        NOT NULL,          -- the source ticket, as the card cites it
    text          text        NOT NULL,          -- redacted, placeholders for its ticket's values
    origin        text        NOT NULL CHECK (origin IN ('sent', 'edited', 'as_is')),
    label         text,                          -- the draft it started from (A or B)
    citations     bigint[]    NOT NULL,          -- that draft's citations
    agents        text[]      NOT NULL,          -- who used it (their kept adoptions)
    adopted_at    timestamptz NOT NULL,          -- the latest of those
    version       text        NOT NULL,          -- the embedding version of ``embedding``
    embedding     vector      NOT NULL,          -- the draft set's redacted query
    brand         text,                          -- the ticket's brand, when known
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_replies_by_version ON memory_replies (version);

-- each refresh also says how many replies the memory holds
ALTER TABLE feedback_memory_refreshes ADD COLUMN replies integer NOT NULL DEFAULT 0;
