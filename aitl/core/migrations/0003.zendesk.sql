-- Zendesk connector: accepted webhook deliveries, tickets and comments, sync cursors,
-- draft requests per ticket revision, write-backs and adoption derived from sent replies.

-- One row per Zendesk event id: the primary key is what makes a redelivery a no-op.
CREATE TABLE zendesk_events (
    event_id     text        PRIMARY KEY,
    event_type   text        NOT NULL,
    ticket_id    bigint,
    payload      jsonb       NOT NULL,
    source       text        NOT NULL CHECK (source IN ('webhook', 'trigger')),
    received_at  timestamptz NOT NULL DEFAULT now(),
    duplicates   integer     NOT NULL DEFAULT 0,
    job_id       bigint
);

-- Signatures already accepted, to refuse a byte-identical replay inside the time window.
CREATE TABLE zendesk_webhook_signatures (
    signature    text        PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now()
);
-- every delivery forgets signatures older than the window: keep that delete an index scan
CREATE INDEX zendesk_webhook_signatures_by_time ON zendesk_webhook_signatures (received_at);

CREATE TABLE zendesk_tickets (
    ticket_id        bigint      PRIMARY KEY,
    subject          text        NOT NULL DEFAULT '',
    description      text        NOT NULL DEFAULT '',
    status           text,
    priority         text,
    requester_id     bigint,
    requester_email  text,
    requester_name   text,
    assignee_id      bigint,
    assignee_email   text,
    group_id         bigint,
    brand_id         bigint,
    tags             text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz,
    updated_at       timestamptz,
    url              text,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

-- body is the live text for the agent's thread; body_redacted the copy kept for training.
CREATE TABLE zendesk_comments (
    comment_id     bigint      PRIMARY KEY,
    ticket_id      bigint      NOT NULL REFERENCES zendesk_tickets (ticket_id),
    author_id      bigint,
    author_role    text        NOT NULL CHECK (author_role IN ('customer', 'agent')),
    public         boolean     NOT NULL,
    body           text        NOT NULL,
    body_redacted  text        NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX zendesk_comments_by_ticket ON zendesk_comments (ticket_id, created_at);

CREATE TABLE zendesk_sync_state (
    name            text        PRIMARY KEY,       -- 'tickets', 'help_center', ...
    cursor          text,
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    items_total     bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one drafting per ticket revision (the newest public customer comment).
CREATE TABLE zendesk_draft_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id      bigint      NOT NULL REFERENCES zendesk_tickets (ticket_id),
    revision       bigint      NOT NULL,           -- comment id the drafts answer
    channel        text,
    status         text        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'drafted', 'delivered', 'failed')),
    draft_set_id   bigint      REFERENCES rag_draft_sets (id),
    requested_via  text        NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    drafted_at     timestamptz,
    delivered_at   timestamptz,
    last_error     text,
    UNIQUE (ticket_id, revision)
);

CREATE TABLE zendesk_writebacks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,   -- the adoption event that asked for it
    ticket_id       bigint      NOT NULL,
    draft_id        bigint      REFERENCES rag_drafts (id),
    body            text        NOT NULL,
    public          boolean     NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'posted', 'failed')),
    comment_id      bigint,
    attempts        integer     NOT NULL DEFAULT 0,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    posted_at       timestamptz,
    last_error      text
);

-- Adoption read from the reply the agent actually sent, kept apart from their clicks.
CREATE TABLE zendesk_derived_adoptions (
    comment_id     bigint      PRIMARY KEY REFERENCES zendesk_comments (comment_id),
    ticket_id      bigint      NOT NULL,
    draft_set_id   bigint      NOT NULL REFERENCES rag_draft_sets (id),
    closest_label  text        NOT NULL CHECK (closest_label IN ('A', 'B')),
    similarity_a   real        NOT NULL,
    similarity_b   real        NOT NULL,
    adoption       text        NOT NULL CHECK (adoption IN ('as_is', 'edited', 'not_used')),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Credentials, encrypted with AITL_SECRETS_KEY (Fernet).
CREATE TABLE connector_secrets (
    name        text        PRIMARY KEY,           -- 'zendesk.api_token', ...
    ciphertext  bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
