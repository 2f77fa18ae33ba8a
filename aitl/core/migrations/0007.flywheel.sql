-- The flywheel: each retraining run, the judge's verdict on every event it read, the agents'
-- estimated reliability, and the model registry with its promotion decisions.

CREATE TABLE flywheel_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'not_enough_data')),
    trigger       text        NOT NULL,              -- 'schedule', 'cli', 'app_home', 'test'
    cutoff        timestamptz NOT NULL,              -- events clicked before this are read
    config        jsonb       NOT NULL DEFAULT '{}',
    counts        jsonb       NOT NULL DEFAULT '{}', -- kept / filtered per dataset
    metrics       jsonb       NOT NULL DEFAULT '{}', -- champion vs challenger per kind
    decisions     jsonb       NOT NULL DEFAULT '{}', -- promoted or not, and why, per kind
    artefacts     jsonb       NOT NULL DEFAULT '{}',
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX flywheel_runs_by_start ON flywheel_runs (started_at DESC);

CREATE TABLE judge_verdicts (
    run_id    bigint  NOT NULL REFERENCES flywheel_runs (id),
    event_id  bigint  NOT NULL REFERENCES feedback_events (id),
    judge     text    NOT NULL,                      -- 'rules' or 'llm:<model>'
    keep      boolean NOT NULL,
    reason    text    NOT NULL,
    PRIMARY KEY (run_id, event_id)
);

CREATE TABLE agent_reliability (
    run_id          bigint NOT NULL REFERENCES flywheel_runs (id),
    agent_id        text   NOT NULL,
    events          integer NOT NULL,
    judge_agreement real,                            -- share of their events the judge kept
    peer_agreement  real,                            -- agreement with peers on the same chunks
    weight          real   NOT NULL,                 -- used as the training weight
    PRIMARY KEY (run_id, agent_id)
);

CREATE TABLE model_registry (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('retriever', 'reranker', 'generator')),
    version            text        NOT NULL,
    path               text        NOT NULL,
    status             text        NOT NULL
                       CHECK (status IN ('champion', 'challenger', 'rejected', 'retired')),
    run_id             bigint      REFERENCES flywheel_runs (id),
    embedding_version  text,                         -- a retriever's knowledge-base index
    metrics            jsonb       NOT NULL DEFAULT '{}',
    baseline           jsonb       NOT NULL DEFAULT '{}',
    decision           text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    promoted_at        timestamptz,
    retired_at         timestamptz,
    UNIQUE (kind, version)
);
CREATE UNIQUE INDEX model_registry_one_champion ON model_registry (kind)
    WHERE status = 'champion';
