"""Post an adopted draft to its Zendesk ticket exactly once.

A timeout does not tell whether Zendesk created the comment, so every retry first looks
for a comment with the same text posted since the request, and only posts when none is there.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg

from aitl.core.db import Database
from connectors import exceptions, jobs, store
from connectors.adoption import normalise
from connectors.client import ZendeskClient
from connectors.placeholder_values import ticket_values
from connectors.tickets import parse_time
from rag import links, placeholders
from rag import store as rag_store
from rag.extractive import sentences

log = logging.getLogger(__name__)
CLOCK_SKEW = timedelta(minutes=2)
QUOTE_WORDS = 8  # a sentence this long of an article, found in a reply, is a quote of it


class WriteBack:
    def __init__(self, db: Database, client: ZendeskClient, queue, *, allow_public: bool) -> None:
        self.db = db
        self.client = client
        self.queue = queue
        self.allow_public = allow_public

    def request(
        self,
        *,
        key: str,
        ticket_id: int,
        body: str,
        draft_id: int | None = None,
        public: bool = False,
    ) -> store.Writeback:
        """Record and queue a write-back; the same key never queues a second one."""
        public = public and self.allow_public  # a public reply needs the admin's consent
        with self.db.connection() as conn:
            body = self._filled(conn, ticket_id, body)
            if public and (refusal := internal_quote(conn, draft_id, body)):
                raise exceptions.InternalSourceQuoted(refusal)
            new_id = store.request_writeback(
                conn, key=key, ticket_id=ticket_id, draft_id=draft_id, body=body, public=public
            )
            if new_id is not None:
                jobs.defer_write_back(self.queue, conn, new_id, ticket_id)
            return store.writeback_by_key(conn, key)

    def _filled(self, conn: psycopg.Connection, ticket_id: int, body: str) -> str:
        """``body`` with the placeholders an agent typed or pasted rendered from the stored
        ticket; refused while one cannot be, or a gap marker is left to fill."""
        stored = store.ticket(conn, ticket_id)
        values = ticket_values(stored, getattr(self.client, "base_url", None)) if stored else {}
        if unfilled := placeholders.leftovers(body, values):
            raise exceptions.UnfilledPlaceholder(
                f"The reply still holds {', '.join(unfilled)}: replace it before posting."
            )
        return placeholders.render(body, values).text

    def run(self, writeback_id: int) -> int | None:
        with self.db.connection() as conn:
            wb = store.writeback(conn, writeback_id, lock=True)
            if wb is None or wb.status in ("posted", "failed"):
                return wb.comment_id if wb else None
            # asked again at posting time: the article may have turned agent-only since
            if wb.public and (refusal := internal_quote(conn, wb.draft_id, wb.body)):
                log.warning("write-back %s not posted: %s", writeback_id, refusal)
                store.mark_writeback_refused(conn, writeback_id, refusal)
                return None
            store.count_attempt(conn, writeback_id)
        existing = self._already_posted(wb) if wb.attempts > 0 else None
        try:
            comment_id = existing or self.client.add_comment(
                wb.ticket_id, wb.body, public=wb.public
            )
        except exceptions.ZendeskError as exc:
            with self.db.connection() as conn:
                store.note_writeback_error(conn, writeback_id, str(exc))
            raise
        with self.db.connection() as conn:
            store.mark_posted(conn, writeback_id, comment_id)
        return comment_id

    def _already_posted(self, wb: store.Writeback) -> int | None:
        # links compared by their text: Zendesk's plain_body of an html comment drops URLs
        wanted = normalise(links.plain(wb.body))
        since = wb.requested_at - CLOCK_SKEW
        for c in self.client.comments(wb.ticket_id):
            created = parse_time(c.get("created_at"))
            recent = created is None or created >= since
            text = normalise(links.plain(c.get("plain_body") or c.get("body") or ""))
            if bool(c.get("public")) == wb.public and recent and text == wanted:
                log.info("write-back %s was already posted as comment %s", wb.id, c["id"])
                return int(c["id"])
        return None


def internal_quote(conn: psycopg.Connection, draft_id: int | None, body: str) -> str | None:
    """Why ``body`` may not go to the customer: it quotes an agent-only article of its draft
    set's context (a sentence of QUOTE_WORDS words or more, compared normalised); None when
    it quotes none."""
    set_id = rag_store.draft_set_of_draft(conn, draft_id) if draft_id is not None else None
    if set_id is None:
        return None
    reply = f" {normalise(body)} "
    for ref in rag_store.context_refs(conn, set_id):
        if ref.audience == "internal" and any(f" {s} " in reply for s in _long_sentences(ref.text)):
            return (
                f"This public reply quotes the internal article '{ref.title}' (agents only): "
                "post it as an internal note, or remove that part."
            )
    return None


def _long_sentences(text: str) -> list[str]:
    units = (normalise(s) for line in text.splitlines() for s in sentences(line.strip()))
    return [u for u in units if len(u.split()) >= QUOTE_WORDS]
