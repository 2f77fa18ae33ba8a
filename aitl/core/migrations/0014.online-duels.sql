-- The online champion/challenger decisions: a sequential test over the A/B duels (Prefer
-- clicks, adoption as a second signal) promotes or retires a challenger once it decides. One
-- decision per pair, so a check repeated by the scheduler or a retry acts once.
CREATE TABLE duel_decisions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL DEFAULT 'generator',
    champion    text        NOT NULL,   -- as drafts record it: a version, 'extractive', 'llm-base'
    challenger  text        NOT NULL,
    verdict     text        NOT NULL CHECK (verdict IN ('better', 'worse', 'no_difference')),
    action      text        NOT NULL CHECK (action IN ('promoted', 'retired', 'kept')),
    duels       integer     NOT NULL,
    figures     jsonb       NOT NULL DEFAULT '{}',
    reason      text        NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, champion, challenger)
);
CREATE INDEX duel_decisions_by_time ON duel_decisions (decided_at);
