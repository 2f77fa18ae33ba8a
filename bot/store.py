"""The bot's SQL: Slack cards, the messages that show a draft set with its buttons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from rag.models import TicketRef

COLUMNS = (
    "id, handoff_key, kind, draft_set_id, ticket_ref, drafts, header, channel, parent_ts,"
    " card_ts, requested_by, shown_at, last_error, created_at"
)


@dataclass(frozen=True)
class Card:
    id: int
    handoff_key: str
    kind: str
    draft_set_id: int
    ticket_ref: str
    drafts: dict[str, int]
    header: dict[str, Any]
    channel: str | None
    parent_ts: str | None
    card_ts: str | None
    requested_by: str | None
    shown_at: datetime | None
    last_error: str | None
    created_at: datetime

    @property
    def draft_ids(self) -> list[int]:
        return [self.drafts[label] for label in sorted(self.drafts)]

    @property
    def zendesk_ticket_id(self) -> int | None:
        return TicketRef.parse(self.ticket_ref).zendesk_id


def _cursor(conn: psycopg.Connection):
    return conn.cursor(row_factory=class_row(Card))


def ensure_card(
    conn: psycopg.Connection,
    *,
    handoff_key: str,
    kind: str,
    draft_set_id: int,
    ticket_ref: str,
    drafts: dict[str, int],
    header: dict[str, Any],
    channel: str | None,
    requested_by: str | None = None,
) -> Card:
    """The card of a hand-off, created on first delivery and found again on retries."""
    conn.execute(
        """
        INSERT INTO slack_cards (handoff_key, kind, draft_set_id, ticket_ref, drafts, header,
            channel, requested_by)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (handoff_key) DO NOTHING
        """,
        (
            handoff_key,
            kind,
            draft_set_id,
            ticket_ref,
            Jsonb(drafts),
            Jsonb(header),
            channel,
            requested_by,
        ),
    )
    card = (
        _cursor(conn)
        .execute(f"SELECT {COLUMNS} FROM slack_cards WHERE handoff_key = %s", (handoff_key,))
        .fetchone()
    )
    assert card is not None
    return card


def card(conn: psycopg.Connection, card_id: int) -> Card | None:
    return (
        _cursor(conn)
        .execute(f"SELECT {COLUMNS} FROM slack_cards WHERE id = %s", (card_id,))
        .fetchone()
    )


def card_by_key(conn: psycopg.Connection, handoff_key: str) -> Card | None:
    return (
        _cursor(conn)
        .execute(f"SELECT {COLUMNS} FROM slack_cards WHERE handoff_key = %s", (handoff_key,))
        .fetchone()
    )


def card_of_set(conn: psycopg.Connection, draft_set_id: int) -> Card | None:
    return (
        _cursor(conn)
        .execute(f"SELECT {COLUMNS} FROM slack_cards WHERE draft_set_id = %s", (draft_set_id,))
        .fetchone()
    )


def thread_of_ticket(conn: psycopg.Connection, ticket_ref: str, channel: str) -> str | None:
    """The ts of the thread a ticket already has in this channel."""
    row = conn.execute(
        "SELECT parent_ts FROM slack_cards WHERE ticket_ref = %s AND channel = %s"
        " AND parent_ts IS NOT NULL ORDER BY id LIMIT 1",
        (ticket_ref, channel),
    ).fetchone()
    return row[0] if row else None


def shown_ticket_threads(
    conn: psycopg.Connection, ticket_refs: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """Ticket ref → (channel, card ts) of the tickets among ``ticket_refs`` whose card is shown."""
    rows = conn.execute(
        "SELECT ticket_ref, channel, card_ts FROM slack_cards"
        " WHERE kind = 'ticket' AND card_ts IS NOT NULL AND ticket_ref = ANY(%s)",
        (list(ticket_refs),),
    ).fetchall()
    return {ref: (channel, ts) for ref, channel, ts in rows}


def set_header(conn: psycopg.Connection, card_id: int, header: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE slack_cards SET header = %s, updated_at = now() WHERE id = %s",
        (Jsonb(header), card_id),
    )


def mark_parent_posted(conn: psycopg.Connection, card_id: int, channel: str, ts: str) -> None:
    conn.execute(
        "UPDATE slack_cards SET channel = %s, parent_ts = %s, last_error = NULL,"
        " updated_at = now() WHERE id = %s",
        (channel, ts, card_id),
    )


def mark_shown(conn: psycopg.Connection, card_id: int, channel: str, ts: str | None) -> None:
    conn.execute(
        "UPDATE slack_cards SET channel = %s, card_ts = %s, shown_at = clock_timestamp(),"
        " last_error = NULL, updated_at = now() WHERE id = %s",
        (channel, ts, card_id),
    )


def count_post_attempt(conn: psycopg.Connection, card_id: int) -> int:
    """Record that posting starts; returns how many attempts started before this one."""
    row = conn.execute(
        "UPDATE slack_cards SET post_attempts = post_attempts + 1, updated_at = now()"
        " WHERE id = %s RETURNING post_attempts - 1",
        (card_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def note_error(conn: psycopg.Connection, card_id: int, error: str) -> None:
    conn.execute(
        "UPDATE slack_cards SET last_error = %s, updated_at = now() WHERE id = %s",
        (error[:500], card_id),
    )


def undelivered(conn: psycopg.Connection, limit: int = 5) -> list[Card]:
    """Ticket cards Slack refused, newest first, for the admin's App Home."""
    return (
        _cursor(conn)
        .execute(
            f"SELECT {COLUMNS} FROM slack_cards WHERE kind = 'ticket' AND shown_at IS NULL"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT %s",
            (limit,),
        )
        .fetchall()
    )


def card_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT kind, count(*) FILTER (WHERE shown_at IS NOT NULL), count(*) FILTER"
        " (WHERE shown_at IS NULL AND last_error IS NOT NULL) FROM slack_cards GROUP BY kind"
    ).fetchall()
    counts: dict[str, int] = {}
    for kind, shown, failed in rows:
        counts[f"{kind}.shown"] = shown
        counts[f"{kind}.failed"] = failed
    return counts


# --- the installation and the requests that queued work ----------------------------------

OFF = ("app_uninstalled", "tokens_revoked")


@dataclass(frozen=True)
class Installation:
    """What Slack told us about the app: whether it may post, since when, and rate limits."""

    active: bool
    changed: str | None  # the newest of app_uninstalled / tokens_revoked / reinstalled
    changed_at: datetime | None
    rate_limited: int  # app_rate_limited events since the time asked about
    last_rate_limited: datetime | None


def add_installation_event(
    conn: psycopg.Connection, kind: str, team_id: str = "", detail: dict[str, Any] | None = None
) -> None:
    conn.execute(
        "INSERT INTO slack_installation_events (team_id, kind, detail) VALUES (%s, %s, %s)",
        (team_id, kind, Jsonb(detail or {})),
    )


def installation(conn: psycopg.Connection, since: datetime) -> Installation:
    changed = conn.execute(
        "SELECT kind, at FROM slack_installation_events WHERE kind <> 'app_rate_limited'"
        " ORDER BY id DESC LIMIT 1"
    ).fetchone()
    count, last = conn.execute(
        "SELECT count(*), max(at) FROM slack_installation_events"
        " WHERE kind = 'app_rate_limited' AND at >= %s",
        (since,),
    ).fetchone()
    kind, at = changed or (None, None)
    return Installation(kind not in OFF, kind, at, count, last)


def claim_request(conn: psycopg.Connection, key: str, kind: str, user_id: str) -> bool:
    """True the first time ``key`` is seen: the caller queues its work in this transaction.
    A Slack retry or a double click finds the key taken and queues nothing."""
    row = conn.execute(
        "INSERT INTO slack_requests (key, kind, user_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, kind, user_id),
    ).fetchone()
    return row is not None


def sets_with_cards(conn: psycopg.Connection, draft_set_ids: Sequence[int]) -> set[int]:
    """Those of ``draft_set_ids`` a card shows (the judge's review queue shows clicks on them)."""
    rows = conn.execute(
        "SELECT draft_set_id FROM slack_cards WHERE draft_set_id = ANY(%s)",
        (list(draft_set_ids),),
    )
    return {set_id for (set_id,) in rows}
