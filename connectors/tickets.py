"""Bring one ticket up to date in our store and decide whether it needs new drafts.

Both paths (webhook job and export poller) end here, so "at most one drafting per ticket
revision" is enforced once: a revision is the newest public comment by the customer, and
``zendesk_draft_requests`` has one row per (ticket, revision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aitl.core import overrides
from aitl.core.db import Database
from aitl.core.pii import redact
from connectors import adoption, jobs, routing, store
from connectors.attachments import AttachmentFiles, attachment_rows
from connectors.client import ZendeskClient
from rag import store as rag_store
from rag.models import SentReply, TicketRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncPolicy:
    routes: list[dict[str, str]]
    default_channel: str | None
    as_is_threshold: float
    edited_threshold: float
    # set (AITL_ZENDESK_STORE_ATTACHMENTS): comments' attachment files are downloaded there
    attachment_files: AttachmentFiles | None = None


@dataclass
class SyncResult:
    ticket_id: int
    new_comments: int
    draft_request_id: int | None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_time(value: Any) -> datetime | None:
    """Zendesk's ISO 8601 timestamps (as Zenpy passes them through) as aware datetimes."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def ticket_row(raw: dict[str, Any], users: dict[int, dict[str, Any]], url: str) -> dict[str, Any]:
    """The ticket as stored, with the context routing and drafting use: the channel it came
    in by (``via.channel``), its form and type, and the requester's locale."""
    requester = users.get(_int(raw.get("requester_id")) or 0, {})
    assignee = users.get(_int(raw.get("assignee_id")) or 0, {})
    via = raw.get("via") if isinstance(raw.get("via"), dict) else {}
    return {
        "ticket_id": int(raw["id"]),
        "subject": raw.get("subject") or "",
        "description": raw.get("description") or "",
        "status": raw.get("status"),
        "priority": raw.get("priority"),
        "requester_id": _int(raw.get("requester_id")),
        "requester_email": requester.get("email"),
        "requester_name": requester.get("name"),
        "assignee_id": _int(raw.get("assignee_id")),
        "assignee_email": assignee.get("email"),
        "assignee_name": assignee.get("name"),
        "group_id": _int(raw.get("group_id")),
        "brand_id": _int(raw.get("brand_id")),
        "tags": list(raw.get("tags") or []),
        "created_at": parse_time(raw.get("created_at")),
        "updated_at": parse_time(raw.get("updated_at")),
        "url": url,
        "via_channel": _str(via.get("channel")),
        "ticket_form_id": _int(raw.get("ticket_form_id")),
        "ticket_type": _str(raw.get("type")),
        "requester_locale": _str(requester.get("locale")),
    }


def comment_rows(
    raw_comments: list[dict[str, Any]], requester_id: int | None, users: dict[int, dict]
) -> list[dict[str, Any]]:
    rows = []
    for c in raw_comments:
        author = _int(c.get("author_id"))
        role = users.get(author or 0, {}).get("role")
        is_customer = author == requester_id or role == "end-user"
        rows.append(
            {
                "comment_id": int(c["id"]),
                "author_id": author,
                "author_role": "customer" if is_customer else "agent",
                "public": bool(c.get("public", True)),
                "body": c.get("plain_body") or c.get("body") or "",
                "created_at": parse_time(c.get("created_at")),
            }
        )
    return rows


class TicketSync:
    def __init__(
        self,
        db: Database,
        client: ZendeskClient,
        queue,
        policy: SyncPolicy,
        sent_replies: SentReplies | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.queue = queue
        self.policy = policy
        self.sent_replies = sent_replies

    def sync(self, ticket_id: int, *, via: str, raw: dict[str, Any] | None = None) -> SyncResult:
        raw = raw or self.client.ticket(ticket_id)
        raw_comments = self.client.comments(ticket_id)
        ids = [_int(raw.get("requester_id")), _int(raw.get("assignee_id"))]
        users = self.client.users(
            [i for i in ids if i] + [c.get("author_id") for c in raw_comments]
        )
        row = ticket_row(raw, users, self.client.ticket_url(ticket_id))
        comments = comment_rows(raw_comments, row["requester_id"], users)
        with self.db.connection() as conn:
            store.upsert_ticket(conn, row)
            new_ids = store.upsert_comments(conn, ticket_id, comments)
            store.upsert_attachments(conn, attachment_rows(raw_comments, ticket_id))
            self._derive_adoptions(
                conn, ticket_id, [c for c in comments if c["comment_id"] in new_ids]
            )
            request_id = self._request_draft(conn, ticket_id, comments, via)
        if self.policy.attachment_files is not None:
            self.policy.attachment_files.fetch_missing(self.db, self.client, ticket_id)
        return SyncResult(ticket_id, len(new_ids), request_id)

    def _routing(self, conn) -> tuple[list[dict[str, str]], str | None]:
        """The routing table as the admin last saved it in App Home, else from settings."""
        saved = overrides.load(conn)
        return (
            saved.get("slack_routes", self.policy.routes),
            saved.get("slack_default_channel", self.policy.default_channel),
        )

    def _request_draft(self, conn, ticket_id: int, comments: list[dict], via: str) -> int | None:
        customer = [c for c in comments if c["public"] and c["author_role"] == "customer"]
        if not customer:
            return None
        revision = customer[-1]["comment_id"]
        if any(
            c["author_role"] == "agent"
            and c["public"]
            and c["created_at"] >= customer[-1]["created_at"]
            for c in comments
        ):
            return None  # already answered: drafting now would only add noise
        ticket = store.ticket(conn, ticket_id)
        routes, default = self._routing(conn)
        channel = routing.route(ticket, routes, default)
        request_id = store.request_draft(conn, ticket_id, revision, via, channel)
        if request_id is not None:
            jobs.defer_draft(self.queue, conn, request_id, ticket_id)
        return request_id

    def _derive_adoptions(self, conn, ticket_id: int, new_comments: list[dict]) -> None:
        """Each new public agent reply is compared with the drafts shown before it."""
        for c in new_comments:
            if c["author_role"] != "agent" or not c["public"]:
                continue
            set_id = store.latest_draft_set_before(conn, ticket_id, c["created_at"])
            if set_id is None:
                continue
            drafts = {d.label: d.text for d in rag_store.drafts_of_set(conn, set_id)}
            derived = adoption.derive(
                c["body"],
                drafts,
                as_is=self.policy.as_is_threshold,
                edited=self.policy.edited_threshold,
            )
            new = store.record_derived_adoption(
                conn,
                comment_id=c["comment_id"],
                ticket_id=ticket_id,
                draft_set_id=set_id,
                closest_label=derived.closest_label,
                similarity_a=derived.similarity_a,
                similarity_b=derived.similarity_b,
                adoption=derived.adoption,
            )
            if new and self.sent_replies is not None:  # feedback, in the same transaction
                self.sent_replies(conn, _sent_reply(ticket_id, set_id, c, derived))


# where a compared reply goes as feedback (the flywheel, wired by the composition root)
SentReplies = Callable[[Any, SentReply], object]


def _sent_reply(
    ticket_id: int, set_id: int, comment: dict[str, Any], derived: adoption.DerivedAdoption
) -> SentReply:
    return SentReply(
        ticket_ref=str(TicketRef.zendesk(ticket_id)),
        draft_set_id=set_id,
        author=str(comment.get("author_id") or "unknown"),
        sent_at=comment["created_at"],
        body=redact(comment["body"]),
        closest_label=derived.closest_label,
        adoption=derived.adoption,
        similarity={"A": derived.similarity_a, "B": derived.similarity_b},
        comment_id=comment["comment_id"],
    )
