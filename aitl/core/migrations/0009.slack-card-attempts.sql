-- How many times a card's posting started. A worker killed after Slack took a message but
-- before its ts was stored leaves this above zero, so the retry looks in Slack first.

ALTER TABLE slack_cards ADD COLUMN post_attempts integer NOT NULL DEFAULT 0;
