-- What real Zendesk accounts hold and the first connector lost (issue 30).
--
-- Knowledge: who may read a document (a Help Center article's user segment, resolved to
-- 'public' when it may be quoted to customers, else 'internal'), which brand's Help Center it
-- belongs to (NULL: every brand's), and the segment and permission group as Zendesk named them.
ALTER TABLE kb_documents
    ADD COLUMN audience text NOT NULL DEFAULT 'public' CHECK (audience IN ('public', 'internal')),
    ADD COLUMN brand    text;
CREATE INDEX kb_documents_by_brand ON kb_documents (brand) WHERE deleted_at IS NULL;

-- Tickets: the context routing and drafting need.
ALTER TABLE zendesk_tickets
    ADD COLUMN via_channel      text,               -- via.channel: email, web, api, chat, ...
    ADD COLUMN ticket_form_id   bigint,
    ADD COLUMN ticket_type      text,               -- question, incident, problem, task
    ADD COLUMN requester_locale text,               -- the requester's locale, e.g. 'de'
    ADD COLUMN assignee_name    text;               -- what {{ticket.assignee.name}} renders to

-- Each comment's attachments as Zendesk lists them; the file itself only when a setting asks.
CREATE TABLE zendesk_attachments (
    attachment_id  bigint      PRIMARY KEY,
    comment_id     bigint      NOT NULL REFERENCES zendesk_comments (comment_id),
    ticket_id      bigint      NOT NULL REFERENCES zendesk_tickets (ticket_id),
    file_name      text        NOT NULL,
    content_type   text,                            -- NULL when Zendesk gave none we know
    size_bytes     bigint,
    url            text,                            -- content_url; NULL when Zendesk gave none
    inline         boolean     NOT NULL DEFAULT false,
    stored_path    text,                            -- set only when AITL_ZENDESK_STORE_ATTACHMENTS
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX zendesk_attachments_by_ticket ON zendesk_attachments (ticket_id, comment_id);
