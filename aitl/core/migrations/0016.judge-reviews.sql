-- Reviews of the virtual judge: an admin or a manager, shown one of a cycle's verdicts in App
-- Home, says whether the judge was right to keep or drop that click. One standing answer per
-- reviewer and event: a later click replaces the earlier one (and the run it was shown from).
CREATE TABLE judge_reviews (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint      NOT NULL,
    event_id     bigint      NOT NULL,
    reviewer_id  text        NOT NULL,             -- Slack user id
    agrees       boolean     NOT NULL,             -- the judge's keep / drop was right
    reviewed_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (run_id, event_id) REFERENCES judge_verdicts (run_id, event_id),
    UNIQUE (event_id, reviewer_id)
);
CREATE INDEX judge_reviews_by_time ON judge_reviews (reviewed_at);
CREATE INDEX judge_reviews_by_verdict ON judge_reviews (run_id, event_id);
