"""SQL of the digest: the stored weekly reports, their deliveries, and gap article drafts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Delivery:
    id: int
    week_start: date
    recipient: str
    kind: str  # 'dm' | 'channel'
    status: str  # 'pending' | 'sent' | 'skipped'
    channel: str | None
    message_ts: str | None
    file_id: str | None
    attempts: int
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class ArticleDraft:
    cluster_key: str
    week_start: date
    title: str
    status: str  # 'requested' | 'created' | 'failed'
    requested_by: str
    article_id: int | None
    url: str | None
    last_error: str | None


_DELIVERY = (
    "id, week_start, recipient, kind, status, channel, message_ts, file_id, attempts,"
    " last_error, sent_at"
)
_DRAFT = "cluster_key, week_start, title, status, requested_by, article_id, url, last_error"


def report(conn: psycopg.Connection, week_start: date) -> tuple[dict, bytes] | None:
    row = conn.execute(
        "SELECT content, chart FROM digest_reports WHERE week_start = %s", (week_start,)
    ).fetchone()
    return (row[0], bytes(row[1])) if row else None


def save_report(
    conn: psycopg.Connection, week_start: date, content: dict, chart: bytes
) -> tuple[dict, bytes]:
    """Keep the first report of a week: a retried send must post what the others got."""
    conn.execute(
        "INSERT INTO digest_reports (week_start, content, chart) VALUES (%s, %s, %s)"
        " ON CONFLICT (week_start) DO NOTHING",
        (week_start, Jsonb(content), chart),
    )
    found = report(conn, week_start)
    assert found is not None
    return found


def claim(conn: psycopg.Connection, week_start: date, recipient: str, kind: str) -> Delivery:
    """The delivery row of a week and recipient, created on first sight; counts the attempt."""
    conn.execute(
        "INSERT INTO digest_deliveries (week_start, recipient, kind) VALUES (%s, %s, %s)"
        " ON CONFLICT (week_start, recipient) DO NOTHING",
        (week_start, recipient, kind),
    )
    row = conn.execute(
        f"UPDATE digest_deliveries SET attempts = attempts + 1"
        f" WHERE week_start = %s AND recipient = %s RETURNING {_DELIVERY}",
        (week_start, recipient),
    ).fetchone()
    return Delivery(*row)


def update_delivery(conn: psycopg.Connection, delivery_id: int, **fields) -> None:
    """Set channel, message_ts, file_id, status or last_error (``sent`` stamps sent_at)."""
    allowed = {"channel", "message_ts", "file_id", "status", "last_error"}
    if not fields or not set(fields) <= allowed:
        raise ValueError(f"unknown delivery fields: {sorted(set(fields) - allowed)}")
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    if fields.get("status") == "sent":
        assignments += ", sent_at = now()"
    conn.execute(
        f"UPDATE digest_deliveries SET {assignments} WHERE id = %(id)s",
        {**fields, "id": delivery_id},
    )


def deliveries(conn: psycopg.Connection, week_start: date) -> list[Delivery]:
    rows = conn.execute(
        f"SELECT {_DELIVERY} FROM digest_deliveries WHERE week_start = %s ORDER BY id",
        (week_start,),
    ).fetchall()
    return [Delivery(*r) for r in rows]


def last_deliveries(conn: psycopg.Connection) -> tuple[date | None, list[Delivery]]:
    """The latest week any digest went out for, and its deliveries."""
    row = conn.execute("SELECT max(week_start) FROM digest_deliveries").fetchone()
    week = row[0] if row else None
    return week, deliveries(conn, week) if week else []


def request_draft(
    conn: psycopg.Connection, cluster_key: str, week_start: date, title: str, by: str
) -> tuple[ArticleDraft, bool]:
    """The cluster's draft row and whether this click created it (a failed one is retried)."""
    row = conn.execute(
        "INSERT INTO gap_article_drafts (cluster_key, week_start, title, requested_by)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (cluster_key) DO UPDATE"
        "   SET status = 'requested', requested_by = EXCLUDED.requested_by, last_error = NULL"
        "   WHERE gap_article_drafts.status = 'failed'"
        " RETURNING 1",
        (cluster_key, week_start, title, by),
    ).fetchone()
    draft = article_draft(conn, cluster_key)
    assert draft is not None
    return draft, row is not None


def article_draft(conn: psycopg.Connection, cluster_key: str) -> ArticleDraft | None:
    row = conn.execute(
        f"SELECT {_DRAFT} FROM gap_article_drafts WHERE cluster_key = %s", (cluster_key,)
    ).fetchone()
    return ArticleDraft(*row) if row else None


def finish_draft(
    conn: psycopg.Connection,
    cluster_key: str,
    *,
    article_id: int | None = None,
    url: str | None = None,
    error: str | None = None,
) -> None:
    if error is not None:
        conn.execute(
            "UPDATE gap_article_drafts SET status = 'failed', last_error = %s"
            " WHERE cluster_key = %s",
            (error[:500], cluster_key),
        )
        return
    conn.execute(
        "UPDATE gap_article_drafts SET status = 'created', article_id = %s, url = %s,"
        " created_at = now(), last_error = NULL WHERE cluster_key = %s",
        (article_id, url, cluster_key),
    )
