"""The only module that writes SQL for the Zendesk connector (tables in migration 0003)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from aitl.core.pii import redact
from connectors.envelopes import WebhookEvent
from rag.models import TicketRef
from rag.store import DraftSetStamp


@dataclass(frozen=True)
class StoredTicket:
    ticket_id: int
    subject: str
    description: str
    status: str | None
    priority: str | None
    requester_id: int | None
    requester_email: str | None
    requester_name: str | None
    assignee_id: int | None
    assignee_email: str | None
    group_id: int | None
    brand_id: int | None
    tags: list[str]
    created_at: datetime | None
    updated_at: datetime | None
    url: str | None
    via_channel: str | None = None
    ticket_form_id: int | None = None
    ticket_type: str | None = None
    requester_locale: str | None = None
    assignee_name: str | None = None  # what {{ticket.assignee.name}} renders to


@dataclass(frozen=True)
class StoredAttachment:
    """A comment's attachment as Zendesk listed it (migration 0017); ``stored_path`` is set
    only when the file was downloaded (AITL_ZENDESK_STORE_ATTACHMENTS)."""

    attachment_id: int
    comment_id: int
    ticket_id: int
    file_name: str
    content_type: str | None
    size_bytes: int | None
    url: str | None
    inline: bool
    stored_path: str | None


@dataclass(frozen=True)
class StoredComment:
    comment_id: int
    ticket_id: int
    author_id: int | None
    author_role: str
    public: bool
    body: str
    body_redacted: str
    created_at: datetime


@dataclass(frozen=True)
class DraftRequest:
    id: int
    ticket_id: int
    revision: int
    channel: str | None
    status: str
    draft_set_id: int | None
    requested_via: str


@dataclass(frozen=True)
class Writeback:
    id: int
    idempotency_key: str
    ticket_id: int
    draft_id: int | None
    body: str
    public: bool
    status: str
    comment_id: int | None
    attempts: int
    requested_at: datetime


# --- webhook deliveries ------------------------------------------------------------------


def remember_signature(conn: psycopg.Connection, signature: str, window_s: int) -> bool:
    """False when this signature was accepted before (a replay); old ones are forgotten."""
    conn.execute(
        "DELETE FROM zendesk_webhook_signatures"
        " WHERE received_at < now() - make_interval(secs => %s)",
        (window_s * 2,),
    )
    row = conn.execute(
        "INSERT INTO zendesk_webhook_signatures (signature) VALUES (%s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (signature,),
    ).fetchone()
    return row is not None


def record_event(conn: psycopg.Connection, event: WebhookEvent) -> bool:
    """True for a new event id; a redelivery only bumps the duplicate counter."""
    row = conn.execute(
        "INSERT INTO zendesk_events (event_id, event_type, ticket_id, payload, source)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING 1",
        (event.event_id, event.event_type, event.ticket_id, Jsonb(event.payload), event.source),
    ).fetchone()
    if row is None:
        conn.execute(
            "UPDATE zendesk_events SET duplicates = duplicates + 1 WHERE event_id = %s",
            (event.event_id,),
        )
    return row is not None


def set_event_job(conn: psycopg.Connection, event_id: str, job_id: int) -> None:
    conn.execute("UPDATE zendesk_events SET job_id = %s WHERE event_id = %s", (job_id, event_id))


def event_ticket(conn: psycopg.Connection, event_id: str) -> int | None:
    row = conn.execute(
        "SELECT ticket_id FROM zendesk_events WHERE event_id = %s", (event_id,)
    ).fetchone()
    return row[0] if row else None


# --- tickets and comments ----------------------------------------------------------------


def upsert_ticket(conn: psycopg.Connection, ticket: dict[str, Any]) -> None:
    columns = [f for f in StoredTicket.__dataclass_fields__ if f != "ticket_id"]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
    conn.execute(
        f"INSERT INTO zendesk_tickets (ticket_id, {', '.join(columns)}, synced_at)"
        f" VALUES (%(ticket_id)s, {', '.join(f'%({c})s' for c in columns)}, now())"
        f" ON CONFLICT (ticket_id) DO UPDATE SET {updates}, synced_at = now()",
        ticket,
    )


def upsert_comments(conn: psycopg.Connection, ticket_id: int, comments: list[dict]) -> list[int]:
    """Store comments (new ones only: Zendesk comments are immutable); return the new ids."""
    new: list[int] = []
    for c in comments:
        row = conn.execute(
            "INSERT INTO zendesk_comments (comment_id, ticket_id, author_id, author_role, public,"
            " body, body_redacted, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (comment_id) DO NOTHING RETURNING comment_id",
            (
                c["comment_id"],
                ticket_id,
                c["author_id"],
                c["author_role"],
                c["public"],
                c["body"],
                redact(c["body"]),
                c["created_at"],
            ),
        ).fetchone()
        if row:
            new.append(row[0])
    return new


_ATTACHMENT_LISTING = ("file_name", "content_type", "size_bytes", "url", "inline")


def upsert_attachments(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    """Store comments' attachments; a listing Zendesk changed since (a redacted file) is
    updated, a downloaded file's path is kept."""
    columns = ("attachment_id", "comment_id", "ticket_id", *_ATTACHMENT_LISTING)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _ATTACHMENT_LISTING)
    for row in rows:
        conn.execute(
            f"INSERT INTO zendesk_attachments ({', '.join(columns)})"
            f" VALUES ({', '.join(f'%({c})s' for c in columns)})"
            f" ON CONFLICT (attachment_id) DO UPDATE SET {updates}",
            row,
        )


def attachments(conn: psycopg.Connection, ticket_id: int) -> list[StoredAttachment]:
    """The ticket's attachments in the order their comments were written."""
    columns = ", ".join(f"a.{c}" for c in StoredAttachment.__dataclass_fields__)
    with conn.cursor(row_factory=class_row(StoredAttachment)) as cur:
        return cur.execute(
            f"SELECT {columns} FROM zendesk_attachments a"
            " JOIN zendesk_comments c ON c.comment_id = a.comment_id"
            " WHERE a.ticket_id = %s ORDER BY c.created_at, c.comment_id, a.attachment_id",
            (ticket_id,),
        ).fetchall()


def set_attachment_path(conn: psycopg.Connection, attachment_id: int, path: str) -> None:
    conn.execute(
        "UPDATE zendesk_attachments SET stored_path = %s WHERE attachment_id = %s",
        (path, attachment_id),
    )


def ticket(conn: psycopg.Connection, ticket_id: int) -> StoredTicket | None:
    columns = ", ".join(StoredTicket.__dataclass_fields__)
    with conn.cursor(row_factory=class_row(StoredTicket)) as cur:
        return cur.execute(
            f"SELECT {columns} FROM zendesk_tickets WHERE ticket_id = %s", (ticket_id,)
        ).fetchone()


def ticket_updated_at(conn: psycopg.Connection, ticket_id: int) -> datetime | None:
    row = conn.execute(
        "SELECT updated_at FROM zendesk_tickets WHERE ticket_id = %s", (ticket_id,)
    ).fetchone()
    return row[0] if row else None


def comments(conn: psycopg.Connection, ticket_id: int) -> list[StoredComment]:
    columns = ", ".join(StoredComment.__dataclass_fields__)
    with conn.cursor(row_factory=class_row(StoredComment)) as cur:
        return cur.execute(
            f"SELECT {columns} FROM zendesk_comments WHERE ticket_id = %s"
            " ORDER BY created_at, comment_id",
            (ticket_id,),
        ).fetchall()


def solved_tickets(conn: psycopg.Connection, limit: int) -> list[int]:
    rows = conn.execute(
        "SELECT ticket_id FROM zendesk_tickets WHERE status IN ('solved', 'closed')"
        " ORDER BY updated_at DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def count_tickets(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM zendesk_tickets").fetchone()[0]


# --- drafting ----------------------------------------------------------------------------

_DRAFT_REQUEST = "id, ticket_id, revision, channel, status, draft_set_id, requested_via"


def request_draft(
    conn: psycopg.Connection, ticket_id: int, revision: int, via: str, channel: str | None
) -> int | None:
    """A new draft request for this revision, or None when one exists (at most once)."""
    row = conn.execute(
        "INSERT INTO zendesk_draft_requests (ticket_id, revision, requested_via, channel)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (ticket_id, revision) DO NOTHING RETURNING id",
        (ticket_id, revision, via, channel),
    ).fetchone()
    return row[0] if row else None


def draft_request(conn: psycopg.Connection, request_id: int) -> DraftRequest | None:
    with conn.cursor(row_factory=class_row(DraftRequest)) as cur:
        return cur.execute(
            f"SELECT {_DRAFT_REQUEST} FROM zendesk_draft_requests WHERE id = %s FOR UPDATE",
            (request_id,),
        ).fetchone()


def mark_drafted(conn: psycopg.Connection, request_id: int, draft_set_id: int) -> None:
    conn.execute(
        "UPDATE zendesk_draft_requests SET status = 'drafted', draft_set_id = %s,"
        " drafted_at = now(), last_error = NULL WHERE id = %s",
        (draft_set_id, request_id),
    )


def mark_delivered(conn: psycopg.Connection, request_id: int) -> None:
    conn.execute(
        "UPDATE zendesk_draft_requests SET status = 'delivered', delivered_at = now()"
        " WHERE id = %s",
        (request_id,),
    )


def mark_draft_failed(conn: psycopg.Connection, request_id: int, error: str) -> None:
    conn.execute(
        "UPDATE zendesk_draft_requests SET last_error = %s WHERE id = %s",
        (error[:2000], request_id),
    )


def latest_draft_set_before(
    conn: psycopg.Connection, ticket_id: int, before: datetime
) -> int | None:
    """The drafts answering the newest customer comment written before an agent's reply
    (both times come from Zendesk's clock, so they compare fairly)."""
    row = conn.execute(
        "SELECT r.draft_set_id FROM zendesk_draft_requests r"
        " JOIN zendesk_comments c ON c.comment_id = r.revision"
        " WHERE r.ticket_id = %s AND r.draft_set_id IS NOT NULL AND c.created_at <= %s"
        " ORDER BY c.created_at DESC, r.id DESC LIMIT 1",
        (ticket_id, before),
    ).fetchone()
    return row[0] if row else None


def draft_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM zendesk_draft_requests GROUP BY status"
    ).fetchall()
    return dict(rows)


# --- derived adoption --------------------------------------------------------------------


def record_derived_adoption(
    conn: psycopg.Connection,
    *,
    comment_id: int,
    ticket_id: int,
    draft_set_id: int,
    closest_label: str,
    similarity_a: float,
    similarity_b: float,
    adoption: str,
) -> bool:
    """False when this reply was compared before (a re-sync of the same comment)."""
    row = conn.execute(
        "INSERT INTO zendesk_derived_adoptions (comment_id, ticket_id, draft_set_id,"
        " closest_label, similarity_a, similarity_b, adoption)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (comment_id) DO NOTHING"
        " RETURNING comment_id",
        (comment_id, ticket_id, draft_set_id, closest_label, similarity_a, similarity_b, adoption),
    ).fetchone()
    return row is not None


# --- write-back --------------------------------------------------------------------------

_WRITEBACK = (
    "id, idempotency_key, ticket_id, draft_id, body, public, status, comment_id, attempts,"
    " requested_at"
)


def request_writeback(
    conn: psycopg.Connection,
    *,
    key: str,
    ticket_id: int,
    draft_id: int | None,
    body: str,
    public: bool,
) -> int | None:
    row = conn.execute(
        "INSERT INTO zendesk_writebacks (idempotency_key, ticket_id, draft_id, body, public)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (key, ticket_id, draft_id, body, public),
    ).fetchone()
    return row[0] if row else None


def writeback(
    conn: psycopg.Connection, writeback_id: int, *, lock: bool = False
) -> Writeback | None:
    suffix = " FOR UPDATE" if lock else ""
    with conn.cursor(row_factory=class_row(Writeback)) as cur:
        return cur.execute(
            f"SELECT {_WRITEBACK} FROM zendesk_writebacks WHERE id = %s{suffix}", (writeback_id,)
        ).fetchone()


def writeback_by_key(conn: psycopg.Connection, key: str) -> Writeback | None:
    with conn.cursor(row_factory=class_row(Writeback)) as cur:
        return cur.execute(
            f"SELECT {_WRITEBACK} FROM zendesk_writebacks WHERE idempotency_key = %s", (key,)
        ).fetchone()


def count_attempt(conn: psycopg.Connection, writeback_id: int) -> None:
    conn.execute(
        "UPDATE zendesk_writebacks SET attempts = attempts + 1 WHERE id = %s", (writeback_id,)
    )


def mark_posted(conn: psycopg.Connection, writeback_id: int, comment_id: int) -> None:
    conn.execute(
        "UPDATE zendesk_writebacks SET status = 'posted', comment_id = %s, posted_at = now(),"
        " last_error = NULL WHERE id = %s",
        (comment_id, writeback_id),
    )


def note_writeback_error(conn: psycopg.Connection, writeback_id: int, error: str) -> None:
    conn.execute(
        "UPDATE zendesk_writebacks SET last_error = %s WHERE id = %s", (error[:2000], writeback_id)
    )


def mark_writeback_refused(conn: psycopg.Connection, writeback_id: int, reason: str) -> None:
    """Never to be posted (it would quote an agent-only article): failed, with the reason."""
    conn.execute(
        "UPDATE zendesk_writebacks SET status = 'failed', last_error = %s WHERE id = %s",
        (reason[:2000], writeback_id),
    )


# --- sync state --------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    name: str
    cursor: str | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    items_total: int


def sync_state(conn: psycopg.Connection, name: str) -> SyncState | None:
    with conn.cursor(row_factory=class_row(SyncState)) as cur:
        return cur.execute(
            "SELECT name, cursor, last_success_at, last_error, last_error_at, items_total"
            " FROM zendesk_sync_state WHERE name = %s",
            (name,),
        ).fetchone()


def save_cursor(conn: psycopg.Connection, name: str, cursor: str | None, items: int) -> None:
    conn.execute(
        "INSERT INTO zendesk_sync_state (name, cursor, last_success_at, items_total)"
        " VALUES (%s, %s, now(), %s) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor,"
        " last_success_at = now(), items_total = zendesk_sync_state.items_total + %s,"
        " last_error = NULL, updated_at = now()",
        (name, cursor, items, items),
    )


def note_sync_error(conn: psycopg.Connection, name: str, error: str) -> None:
    conn.execute(
        "INSERT INTO zendesk_sync_state (name, last_error, last_error_at) VALUES (%s, %s, now())"
        " ON CONFLICT (name) DO UPDATE SET last_error = excluded.last_error,"
        " last_error_at = now(), updated_at = now()",
        (name, error[:2000]),
    )


def event_counts(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(duplicates), 0) FROM zendesk_events"
    ).fetchone()
    return {"events": row[0], "duplicates_suppressed": int(row[1])}


# Per ticket drafted in the window, how its first reply sent after that draft (and before the
# window's end) used the drafts: as the connector derived it when it read the reply.
SENT_ADOPTION = """
SELECT adoption, count(*) FROM (
    SELECT DISTINCT ON (d.ticket_id) d.adoption
    FROM zendesk_derived_adoptions d
    JOIN zendesk_comments c ON c.comment_id = d.comment_id
    JOIN unnest(%(tickets)s::bigint[], %(drafted)s::timestamptz[]) AS w (ticket_id, created_at)
        ON w.ticket_id = d.ticket_id AND w.created_at <= c.created_at
    WHERE c.created_at < %(end)s
    ORDER BY d.ticket_id, c.created_at, c.comment_id
) first_replies GROUP BY adoption
"""


def sent_adoption(
    conn: psycopg.Connection, drafted: Sequence[DraftSetStamp], end: datetime
) -> dict[str, int]:
    """Adoption from the replies agents sent in Zendesk, counted once per drafted ticket: its
    first public reply after a draft set in ``drafted`` and before ``end``."""
    stamps = [(TicketRef.parse(d.ticket_ref).zendesk_id, d.created_at) for d in drafted]
    stamps = [(ticket, at) for ticket, at in stamps if ticket is not None]
    params = {
        "tickets": [ticket for ticket, _ in stamps],
        "drafted": [at for _, at in stamps],
        "end": end,
    }
    return {adoption: int(count) for adoption, count in conn.execute(SENT_ADOPTION, params)}
