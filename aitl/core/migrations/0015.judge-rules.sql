-- Which of the judge's rules doubted each event (every rule runs on every event, so each one's
-- share can be watched from run to run); the verdict's reason is the first rule's.
ALTER TABLE judge_verdicts ADD COLUMN rules text[] NOT NULL DEFAULT '{}';
