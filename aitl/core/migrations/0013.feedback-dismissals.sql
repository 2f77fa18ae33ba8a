-- A modal an agent closed without sending it (Slack's view_closed): the adoption it was opened
-- for stays recorded without a rationale; closing often is a sign of annotation fatigue, which
-- the weekly digest reports per agent.
CREATE TABLE feedback_dismissals (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draft_set_id  bigint      REFERENCES rag_draft_sets (id),
    agent_id      text        NOT NULL,
    modal         text        NOT NULL CHECK (modal IN ('adoption', 'missing_knowledge')),
    view_id       text        NOT NULL,
    closed_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (view_id)
);
CREATE INDEX feedback_dismissals_by_agent ON feedback_dismissals (agent_id, closed_at);
