"""The demo's calendar: weeks replayed in minutes, moved back to the weeks they stand for.

``aitl demo`` streams six weeks of tickets in a few minutes. For the digest to have its weeks,
the cycles their weekly cut-offs and the held-out split its time order, each phase of the
replay (a week's traffic, a cycle) is moved, once it is over, to the calendar time it stands
for: a week's tickets to the Monday morning of that past week, a cycle to the Monday 02:00
after it (the retrain schedule's default). Every ``timestamptz`` value written since the phase
began is shifted back by the same amount, in one transaction, so order and durations within
the phase are kept and every row is moved exactly once.

This is the one place the demo writes to the product's tables itself, and it needs a superuser
(``session_replication_role``) because the click log is append-only by trigger: the embedded
PostgreSQL the demo starts is one. The job queue's and the migrations' tables are left alone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from aitl.core.db import Database
from aitl.core.exceptions import AitlError

log = logging.getLogger(__name__)
SKIPPED = ("procrastinate", "_yoyo", "yoyo")  # the queue's and the migrations' own tables
WEEK = timedelta(days=7)


class CalendarError(AitlError):
    """The demo could not move its replayed weeks into the past."""


class PastWeeks:
    """Where each replayed week goes: ``weeks`` whole weeks ending last Sunday."""

    def __init__(self, db: Database, weeks: int, now: datetime | None = None) -> None:
        self.db = db
        now = now or datetime.now(UTC)
        this_monday = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(
            days=now.weekday()
        )
        self.first_monday = this_monday - weeks * WEEK
        self.mark = datetime.now(UTC)  # the start of the phase being replayed

    def week_start(self, week: int) -> datetime:
        """Monday 09:00 of replayed week ``week`` (0: the first)."""
        return self.first_monday + week * WEEK + timedelta(hours=9)

    def cycle_time(self, after_week: int) -> datetime:
        """Monday 02:00 after week ``after_week``: when the weekly retrain runs."""
        return self.first_monday + (after_week + 1) * WEEK + timedelta(hours=2)

    def begin(self) -> None:
        """A new phase starts now."""
        self.mark = datetime.now(UTC)

    def settle(self, to: datetime) -> int:
        """Move everything written since the phase began to start at ``to``; the next phase
        begins now. Returns how many values moved."""
        until = datetime.now(UTC)
        shift = self.mark - to
        moved = move(self.db, self.mark, shift)
        log.info("moved %d timestamps of the phase back by %s", moved, shift)
        self.mark = until
        return moved


def move(db: Database, since: datetime, shift: timedelta) -> int:
    """Shift back by ``shift`` every timestamp at or after ``since``, in one transaction."""
    with db.connection() as conn:
        try:
            conn.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CalendarError(
                "the demo replays past weeks by moving its own rows back in time, which needs"
                " a superuser: run it on the embedded PostgreSQL (leave DATABASE_URL unset)"
            ) from exc
        moved = 0
        for table, column in timestamp_columns(conn):
            statement = sql.SQL("UPDATE {t} SET {c} = {c} - %s WHERE {c} >= %s").format(
                t=sql.Identifier(table), c=sql.Identifier(column)
            )
            moved += conn.execute(statement, (shift, since)).rowcount
        return moved


def timestamp_columns(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every ``timestamptz`` column of the product's tables in the current schema."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " AND c.data_type = 'timestamp with time zone' ORDER BY 1, 2"
    ).fetchall()
    return [(t, c) for t, c in rows if not t.startswith(SKIPPED)]
