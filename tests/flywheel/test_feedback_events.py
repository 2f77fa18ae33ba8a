"""Feedback events on the real database: once per click, superseded not overwritten,
append-only, and safe when the same click races itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from flywheel import store
from flywheel.events import Feedback
from flywheel.exceptions import InvalidFeedback
from tests.support.drafts import draft_set

SHOWN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def click(set_id: int, value: str = "A", agent: str = "U1", kind: str = "preference", **kw):
    return Feedback(
        kind=kind,
        value=value,
        draft_set_id=set_id,
        agent_id=agent,
        clicked_at=SHOWN + timedelta(seconds=30),
        **kw,
    )


def record(db, feedback, draft_ids):
    with db.connection() as conn:
        return store.record(
            conn, feedback, ticket_ref="zendesk:1", draft_ids=draft_ids, shown_at=SHOWN
        )


def events(db, set_id):
    with db.connection() as conn:
        return store.events(conn, draft_set_id=set_id)


@pytest.fixture
def drafted(db):
    with db.connection() as conn:
        set_id, drafts = draft_set(conn)
    return set_id, list(drafts.values())


def test_a_double_click_stores_one_event(db, drafted):
    set_id, ids = drafted
    first, created = record(db, click(set_id), ids)
    again, created_again = record(db, click(set_id), ids)
    assert created and not created_again
    assert again.id == first.id
    assert len(events(db, set_id)) == 1
    assert first.shown_at == SHOWN and first.draft_ids == ids


def test_a_change_of_mind_supersedes_and_keeps_every_click(db, drafted):
    set_id, ids = drafted
    a, _ = record(db, click(set_id, "A"), ids)
    b, _ = record(db, click(set_id, "B"), ids)
    a_again, created = record(db, click(set_id, "A"), ids)
    assert created, "going back to A after B is a new answer"
    assert [e.value for e in events(db, set_id)] == ["A", "B", "A"]
    assert (b.supersedes, a_again.supersedes) == (a.id, b.id)
    with db.connection() as conn:
        standing = store.current(conn, set_id)
    assert [(e.kind, e.value) for e in standing] == [("preference", "A")]


def test_each_agent_and_each_chunk_has_its_own_slot(db, drafted):
    set_id, ids = drafted
    record(db, click(set_id, "A", agent="U1"), ids)
    record(db, click(set_id, "B", agent="U2"), ids)
    for chunk, value in ((11, "relevant"), (12, "not_relevant")):
        record(
            db,
            click(set_id, value, kind="relevance", subject=f"chunk:{chunk}", chunk_ids=(chunk,)),
            ids,
        )
    with db.connection() as conn:
        standing = store.current(conn, set_id)
    assert sorted((e.agent_id, e.value) for e in standing) == [
        ("U1", "A"),
        ("U1", "not_relevant"),
        ("U1", "relevant"),
        ("U2", "B"),
    ]


def test_the_same_click_racing_itself_is_stored_once(db, drafted):
    set_id, ids = drafted
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: record(db, click(set_id, "tie"), ids), range(8)))
    assert sum(created for _, created in results) == 1
    assert len({event.id for event, _ in results}) == 1
    assert len(events(db, set_id)) == 1


def test_events_cannot_be_updated_or_deleted(db, drafted):
    set_id, ids = drafted
    record(db, click(set_id), ids)
    for statement in (
        "UPDATE feedback_events SET value = 'B'",
        "DELETE FROM feedback_events",
    ):
        with (
            pytest.raises(psycopg.errors.RaiseException, match="append-only"),
            db.connection() as conn,
        ):
            conn.execute(statement)
    assert [e.value for e in events(db, set_id)] == ["A"]


def test_values_are_checked_before_and_in_the_database(db, drafted):
    set_id, _ = drafted
    with pytest.raises(InvalidFeedback):
        click(set_id, "C")
    with pytest.raises(InvalidFeedback):
        click(set_id, "relevant", kind="preference")
    with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
        conn.execute(
            "INSERT INTO feedback_events (idempotency_key, kind, value, ticket_ref, draft_set_id,"
            " draft_ids, agent_id, shown_at, clicked_at) VALUES ('k', 'adoption', 'maybe',"
            " 'x', %s, '{}', 'U1', now(), now())",
            (set_id,),
        )


def test_agent_stats_count_clicks_and_the_standing_adoption(db, drafted):
    set_id, ids = drafted
    record(db, click(set_id, "A"), ids)
    record(db, click(set_id, "not_used", kind="adoption"), ids)
    record(db, click(set_id, "as_is", kind="adoption", rationale={"label": "A"}), ids)
    with db.connection() as conn:
        other_set, other_ids = draft_set(conn)
    record(db, click(other_set, "not_used", kind="adoption"), list(other_ids.values()))
    with db.connection() as conn:
        stats = store.agent_stats(conn, "U1", SHOWN - timedelta(days=1))
        nobody = store.agent_stats(conn, "U9", SHOWN - timedelta(days=1))
    assert stats.events == {"preference": 1, "adoption": 3}
    assert stats.draft_sets == 2
    assert stats.adoptions == {"as_is": 1, "not_used": 1}
    assert stats.adoption_rate == 0.5
    assert nobody.adoption_rate is None and nobody.draft_sets == 0


def test_a_click_stamped_before_its_card_was_shown_counts_from_the_showing(db, drafted):
    """Slack stamps clicks with its own clock: one a little behind ours must not look like a
    click made before the card existed (a negative reading time)."""
    from aitl.core.queue import build_deferrer
    from bot.recorder import FeedbackRecorder
    from sandboxes.agents.policy import show

    set_id, _ = drafted
    card = show(db, set_id, "zendesk:1").card
    early = click(set_id, "B")
    early = Feedback(**{**early.__dict__, "clicked_at": card.shown_at - timedelta(seconds=2)})
    recorded = FeedbackRecorder(db, build_deferrer(db.url)).record(early, refresh=False)
    assert recorded.created and recorded.event.clicked_at == card.shown_at
    later = click(set_id, "A", agent="U2")
    later = Feedback(**{**later.__dict__, "clicked_at": card.shown_at + timedelta(seconds=40)})
    kept = FeedbackRecorder(db, build_deferrer(db.url)).record(later, refresh=False)
    assert kept.event.clicked_at == card.shown_at + timedelta(seconds=40)
