"""The flywheel's SQL: feedback events (append-only) and what is read back from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from flywheel.events import Feedback, StoredFeedback

COLUMNS = (
    "id, kind, value, ticket_ref, draft_set_id, draft_ids, draft_id, chunk_ids, subject,"
    " agent_id, rationale, shown_at, clicked_at, supersedes, idempotency_key"
)


def record(
    conn: psycopg.Connection,
    feedback: Feedback,
    *,
    ticket_ref: str,
    draft_ids: Sequence[int],
    shown_at: datetime,
) -> tuple[StoredFeedback, bool]:
    """Store a click once; returns the event and whether this call created it.

    Repeating the slot's current answer stores nothing. Two copies of the same click racing
    each other compute the same key, and the unique key lets only one in.
    """
    current = latest_in_slot(conn, feedback)
    if current is not None and feedback.same_answer(current):
        return current, False
    key = feedback.idempotency_key(current.id if current else None)
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    row = cur.execute(
        f"""
        INSERT INTO feedback_events (idempotency_key, kind, value, ticket_ref, draft_set_id,
            draft_ids, draft_id, chunk_ids, subject, agent_id, rationale, shown_at, clicked_at,
            supersedes, source, source_ref)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING {COLUMNS}
        """,
        (
            key,
            feedback.kind,
            feedback.value,
            ticket_ref,
            feedback.draft_set_id,
            list(draft_ids),
            feedback.draft_id,
            list(feedback.chunk_ids),
            feedback.subject,
            feedback.agent_id,
            Jsonb(feedback.rationale),
            shown_at,
            feedback.clicked_at,
            current.id if current else None,
            feedback.source,
            Jsonb(feedback.source_ref),
        ),
    ).fetchone()
    if row is not None:
        return row, True
    existing = cur.execute(
        f"SELECT {COLUMNS} FROM feedback_events WHERE idempotency_key = %s", (key,)
    ).fetchone()
    assert existing is not None  # the conflicting row is committed: we saw the conflict
    return existing, False


def latest_in_slot(conn: psycopg.Connection, feedback: Feedback) -> StoredFeedback | None:
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM feedback_events
        WHERE draft_set_id = %s AND kind = %s AND subject = %s AND agent_id = %s
        ORDER BY id DESC LIMIT 1
        """,
        (feedback.draft_set_id, feedback.kind, feedback.subject, feedback.agent_id),
    ).fetchone()


def current(conn: psycopg.Connection, draft_set_id: int) -> list[StoredFeedback]:
    """The answer standing in each slot of a draft set (superseded clicks left out)."""
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM (
            SELECT DISTINCT ON (kind, subject, agent_id) {COLUMNS}
            FROM feedback_events WHERE draft_set_id = %s
            ORDER BY kind, subject, agent_id, id DESC
        ) latest ORDER BY id
        """,
        (draft_set_id,),
    ).fetchall()


def events(
    conn: psycopg.Connection, *, draft_set_id: int | None = None, kind: str | None = None
) -> list[StoredFeedback]:
    """Every event in insertion order, superseded ones included."""
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM feedback_events
        WHERE (%(set)s::bigint IS NULL OR draft_set_id = %(set)s)
          AND (%(kind)s::text IS NULL OR kind = %(kind)s)
        ORDER BY id
        """,
        {"set": draft_set_id, "kind": kind},
    ).fetchall()


@dataclass(frozen=True)
class AgentStats:
    """One agent's own figures, for their App Home."""

    events: dict[str, int]
    draft_sets: int
    adoptions: dict[str, int]
    last_click: datetime | None

    @property
    def adoption_rate(self) -> float | None:
        """Share of adoption answers that used a draft (as is or edited)."""
        total = sum(self.adoptions.values())
        used = self.adoptions.get("as_is", 0) + self.adoptions.get("edited", 0)
        return used / total if total else None


def agent_stats(conn: psycopg.Connection, agent_id: str, since: datetime) -> AgentStats:
    counts = conn.execute(
        "SELECT kind, count(*) FROM feedback_events WHERE agent_id = %s AND clicked_at >= %s"
        " GROUP BY kind",
        (agent_id, since),
    ).fetchall()
    sets, last = conn.execute(
        "SELECT count(DISTINCT draft_set_id), max(clicked_at) FROM feedback_events"
        " WHERE agent_id = %s AND clicked_at >= %s",
        (agent_id, since),
    ).fetchone()
    adoptions = conn.execute(
        """
        SELECT value, count(*) FROM (
            SELECT DISTINCT ON (draft_set_id) value FROM feedback_events
            WHERE agent_id = %s AND kind = 'adoption' AND clicked_at >= %s
            ORDER BY draft_set_id, id DESC
        ) latest GROUP BY value
        """,
        (agent_id, since),
    ).fetchall()
    return AgentStats(dict(counts), sets, dict(adoptions), last)
