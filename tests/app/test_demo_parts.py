"""The demo's parts on their own: its calendar (replayed weeks moved to past weeks), the weeks
its cycles run after, its before/after figures with intervals, and how its agents read drafts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from aitl.app.demo import cycle_weeks
from aitl.app.demo_report import Card, Change, Share, compare
from aitl.app.demo_time import PastWeeks, move, timestamp_columns
from flywheel import store
from flywheel.feedback import Feedback
from rag import store as rag_store
from rag.models import Draft, DraftSet, Ticket
from sandboxes.agents.sandbox_agent import preference_by_support, supported_shares


def draft_set(db) -> int:
    ticket = Ticket("Refund", "How long do refunds take?", external_id="zendesk:1")
    drafts = tuple(Draft(label, "text", (), {"role": "variant"}) for label in "AB")
    with db.connection() as conn:
        return rag_store.save_draft_set(
            conn, "zendesk:1", ticket.query_text(), DraftSet(ticket, (), (), drafts, {})
        )


def click(db, set_id: int, shown: datetime, at: datetime) -> None:
    feedback = Feedback("preference", "A", set_id, "U1", at, source_ref={"channel": "C1"})
    with db.connection() as conn:
        store.record(conn, feedback, ticket_ref="zendesk:1", draft_ids=[], shown_at=shown)


def test_moving_a_phase_shifts_every_timestamp_written_since_once(db):
    earlier = draft_set(db)
    with db.connection() as conn:
        before = conn.execute("SELECT created_at FROM rag_draft_sets").fetchone()[0]
    since = datetime.now(UTC)
    later = draft_set(db)
    click(db, later, since, since + timedelta(seconds=30))
    shift = timedelta(days=20)
    moved = move(db, since, shift)
    with db.connection() as conn:
        stamps = dict(conn.execute("SELECT id, created_at FROM rag_draft_sets"))
        event = conn.execute("SELECT shown_at, clicked_at, recorded_at FROM feedback_events")
        shown, clicked, recorded = event.fetchone()
        # the click log stays append-only for the product: the trigger is only bypassed here
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("UPDATE feedback_events SET value = 'B'")
    assert stamps[earlier] == before, "written before the phase: left alone"
    assert since - shift <= stamps[later] < datetime.now(UTC) - shift
    assert clicked - shown == timedelta(seconds=30), "durations within the phase are kept"
    assert recorded < datetime.now(UTC) - shift + timedelta(seconds=1)
    assert moved >= 4
    assert not any(table.startswith("procrastinate") for table, _ in timestamp_columns_of(db))


def timestamp_columns_of(db):
    with db.connection() as conn:
        return timestamp_columns(conn)


def test_past_weeks_put_each_week_on_its_monday_and_cycles_the_monday_after(db):
    now = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)  # a Wednesday
    weeks = PastWeeks(db, 6, now)
    assert weeks.week_start(0) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert weeks.week_start(5) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert weeks.cycle_time(1) == datetime(2026, 11, 9, 2, 0, tzinfo=UTC)
    assert weeks.week_start(5) + timedelta(days=7) < now, "the last week is a full past week"


def test_settling_moves_the_phase_to_its_week_and_starts_the_next(db):
    weeks = PastWeeks(db, 2)
    first = draft_set(db)
    weeks.settle(weeks.week_start(0))
    second = draft_set(db)
    weeks.settle(weeks.week_start(1))
    with db.connection() as conn:
        stamps = dict(conn.execute("SELECT id, created_at FROM rag_draft_sets"))
    assert weeks.week_start(0) <= stamps[first] < weeks.week_start(0) + timedelta(minutes=5)
    assert weeks.week_start(1) <= stamps[second] < weeks.week_start(1) + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("weeks", "cycles", "expected"),
    [
        (range(6), 2, [1, 3]),
        (range(6), 1, [2]),
        (range(6), 9, [0, 1, 2, 3, 4]),
        (range(1), 2, []),
        (range(6), 0, []),
    ],
)
def test_cycles_are_spread_over_the_weeks_and_never_after_the_last(weeks, cycles, expected):
    assert cycle_weeks(list(weeks), cycles) == expected


def test_a_change_whose_interval_holds_zero_is_no_change():
    assert Change(Share(40, 100), Share(44, 100)).shown().startswith("no change detected (+4 pts")
    clear = Change(Share(40, 100), Share(60, 100))
    low, high = clear.interval()
    assert 0 < low < 0.2 < high and clear.shown().startswith("better (+20 pts")
    assert Change(Share(0, 0), Share(3, 5)).shown() == "n/a"
    assert Share(3, 4).shown() == "75% [30%, 95%] of 4"


def test_compare_says_fewer_missing_knowledge_is_better():
    missing = Card(1, 0, True, True, False, True, 0, 1)
    fine = Card(2, 1, True, True, True, False, 1, 1)
    rows = {row[0].split(" (")[0]: row for row in compare([missing] * 60, [fine] * 60)}
    assert rows["missing knowledge named"][3].startswith("better (-100 pts")
    assert rows["a draft used"][3].startswith("better (+100 pts")
    assert rows["right article among the sources"][3].startswith("no change detected (+0 pts")


def test_the_simulated_agent_prefers_the_draft_the_right_article_supports():
    article = ["Refunds reach your card within 5 to 10 business days after we receive the item."]
    drafts = {
        "A": 'Hi there,\n\nThanks for getting in touch about "refund".\n\nRefunds reach your'
        " card within 5 to 10 business days after we receive the item.\n\nBest regards",
        "B": 'Hi there,\n\nThanks for getting in touch about "refund".\n\nPlease restart the'
        " hub and hold the button for ten seconds.\n\nBest regards",
    }
    support = supported_shares(drafts, article, ("Best regards",))
    assert support["A"] == 1.0 and support["B"] == 0.0, "the greeting is not read as a claim"
    assert preference_by_support(support) == "A"
    assert preference_by_support({"A": 0.9, "B": 0.85}) == "tie"
    assert preference_by_support({"A": 0.2, "B": 0.1}) == "both_bad"
    assert supported_shares(drafts, []) == {"A": 0.0, "B": 0.0}, "no article: nothing is right"
