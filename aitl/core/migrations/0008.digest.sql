-- The weekly manager digest: what each week's report said (so the full-report modal and the
-- "Draft article" button act on what managers read), who it reached, and the Help Center
-- drafts made from its knowledge gaps.

CREATE TABLE digest_reports (
    week_start  date        PRIMARY KEY,            -- Monday (UTC) of the week reported
    content     jsonb       NOT NULL,
    chart       bytea       NOT NULL,               -- the PNG posted with it
    built_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per week and recipient: a retried job resumes where it stopped and sends nothing
-- twice (the message's ts and the chart's file id are stored the moment Slack returns them).
CREATE TABLE digest_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    week_start   date        NOT NULL REFERENCES digest_reports (week_start),
    recipient    text        NOT NULL,              -- a Slack user id (DM) or channel id
    kind         text        NOT NULL CHECK (kind IN ('dm', 'channel')),
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sent', 'skipped')),
    channel      text,                              -- where it went (the DM's channel id)
    message_ts   text,
    file_id      text,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    UNIQUE (week_start, recipient)
);

-- A gap cluster becomes at most one Help Center draft, whoever clicks and however often.
CREATE TABLE gap_article_drafts (
    cluster_key  text        PRIMARY KEY,
    week_start   date        NOT NULL REFERENCES digest_reports (week_start),
    title        text        NOT NULL,
    status       text        NOT NULL DEFAULT 'requested'
                 CHECK (status IN ('requested', 'created', 'failed')),
    requested_by text        NOT NULL,
    article_id   bigint,
    url          text,
    last_error   text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz
);
