-- What Slack told us about the app itself, and the requests that queued work.
--
-- slack_installation_events: app_rate_limited (Slack dropped events for a minute),
-- app_uninstalled and tokens_revoked (stop posting), reinstalled (Slack reached us again, or
-- auth.test passed). The installation is inactive while the newest of the last three is not
-- 'reinstalled'.
CREATE TABLE slack_installation_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id     text        NOT NULL DEFAULT '',
    kind        text        NOT NULL CHECK (kind IN (
                    'app_rate_limited', 'app_uninstalled', 'tokens_revoked', 'reinstalled')),
    detail      jsonb       NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_installation_events_by_kind ON slack_installation_events (kind, at);

-- One row per Slack request that queued work (a retry or a double click finds its key here
-- and queues nothing): the key is what Slack sends, e.g. 'promote:<action_ts>:<user>'.
CREATE TABLE slack_requests (
    key         text        PRIMARY KEY,
    kind        text        NOT NULL,
    user_id     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
