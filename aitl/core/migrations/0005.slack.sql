-- Slack messages that show a draft set with its buttons ("cards"), and where they live.

CREATE TABLE slack_cards (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handoff_key   text        NOT NULL UNIQUE,     -- 'zendesk-request:<id>', 'ask:<uuid>'
    kind          text        NOT NULL CHECK (kind IN ('ticket', 'ask')),
    draft_set_id  bigint      NOT NULL UNIQUE REFERENCES rag_draft_sets (id),
    ticket_ref    text        NOT NULL,
    drafts        jsonb       NOT NULL,            -- {"A": draft id, "B": draft id}
    header        jsonb       NOT NULL,            -- what the parent message shows
    channel       text,
    parent_ts     text,
    card_ts       text,
    requested_by  text,                            -- the agent who asked (/aitl ask)
    shown_at      timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX slack_cards_by_message ON slack_cards (channel, card_ts)
    WHERE card_ts IS NOT NULL;
