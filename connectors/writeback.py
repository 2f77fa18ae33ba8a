"""Post an adopted draft to its Zendesk ticket exactly once.

A timeout does not tell whether Zendesk created the comment, so every retry first looks
for a comment with the same text posted since the request, and only posts when none is there.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aitl.core.db import Database
from connectors import exceptions, jobs, store
from connectors.adoption import normalise
from connectors.client import ZendeskClient
from connectors.tickets import parse_time

log = logging.getLogger(__name__)
CLOCK_SKEW = timedelta(minutes=2)


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
            new_id = store.request_writeback(
                conn, key=key, ticket_id=ticket_id, draft_id=draft_id, body=body, public=public
            )
            if new_id is not None:
                jobs.defer_write_back(self.queue, conn, new_id, ticket_id)
            return store.writeback_by_key(conn, key)

    def run(self, writeback_id: int) -> int | None:
        with self.db.connection() as conn:
            wb = store.writeback(conn, writeback_id, lock=True)
            if wb is None or wb.status == "posted":
                return wb.comment_id if wb else None
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
        wanted = normalise(wb.body)
        since = wb.requested_at - CLOCK_SKEW
        for c in self.client.comments(wb.ticket_id):
            created = parse_time(c.get("created_at"))
            recent = created is None or created >= since
            text = normalise(c.get("plain_body") or c.get("body") or "")
            if bool(c.get("public")) == wb.public and recent and text == wanted:
                log.info("write-back %s was already posted as comment %s", wb.id, c["id"])
                return int(c["id"])
        return None
