-- Every promotion with the champion it replaced, so a rollback undoes the latest one still
-- standing. Reading "the previous champion" from promotion times brought a model an admin had
-- already rolled back live again, and a second rollback swapped back instead of going further.

CREATE TABLE model_promotions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL,
    version      text        NOT NULL,
    replaced     text,                            -- the champion before it; NULL: shipped model
    reason       text,
    promoted_at  timestamptz NOT NULL DEFAULT now(),
    undone_at    timestamptz,                     -- set by the rollback that undid it
    FOREIGN KEY (kind, version) REFERENCES model_registry (kind, version),
    FOREIGN KEY (kind, replaced) REFERENCES model_registry (kind, version)
);
CREATE INDEX model_promotions_standing ON model_promotions (kind, id) WHERE undone_at IS NULL;

-- champions from before this table: the model promoted before them, as rollbacks read it then
INSERT INTO model_promotions (kind, version, replaced, reason, promoted_at)
SELECT c.kind, c.version,
       (SELECT p.version FROM model_registry p
        WHERE p.kind = c.kind AND p.status = 'retired' AND p.promoted_at < c.promoted_at
        ORDER BY p.promoted_at DESC LIMIT 1),
       c.decision, coalesce(c.promoted_at, now())
FROM model_registry c WHERE c.status = 'champion';
