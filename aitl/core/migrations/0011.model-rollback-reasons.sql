-- Why each promotion was undone, beside when: the history of model changes that App Home,
-- `aitl models history` and the weekly digest show reads both from model_promotions.

ALTER TABLE model_promotions ADD COLUMN undone_reason text;
CREATE INDEX model_promotions_promoted_at ON model_promotions (promoted_at);
CREATE INDEX model_promotions_undone_at ON model_promotions (undone_at) WHERE undone_at IS NOT NULL;
