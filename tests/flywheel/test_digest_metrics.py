"""The digest's weekly figures, counted on a hand-built week of real rows in PostgreSQL.

Events are stored with ``flywheel.store.record``, the product's own way, so supersession and
slots are the real ones. Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from connectors import store as zendesk_store
from flywheel import store
from flywheel.digest.metrics import (
    FatigueRules,
    Window,
    last_full_week,
    last_retrain,
    week_metrics,
    week_of,
    weekly_trend,
)
from flywheel.events import Dismissal, Feedback, StoredFeedback
from flywheel.replies import record_sent_reply
from rag.models import SentReply
from tests.support.drafts import draft_set

DUEL = ("champion", "challenger")
DUEL_B_CHAMPION = ("challenger", "champion")


def t(month: int, day: int, hour: int = 0, minute: int = 0, second: float = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


MON = t(11, 16)  # a Monday
WEEK = Window(MON, t(11, 23))  # "16–22 Nov 2026"


@dataclass(frozen=True)
class Card:
    """A draft set as the agents saw it."""

    id: int
    drafts: dict[str, int]
    ticket_ref: str
    shown_at: datetime


def card(conn, ticket_ref: str, created: datetime, roles=("champion", "champion"), texts=None):
    texts = texts or (f"{ticket_ref} draft A.", f"{ticket_ref} draft B.")
    set_id, drafts = draft_set(
        conn, ticket_ref=ticket_ref, texts=texts, roles=roles, created_at=created
    )
    return Card(set_id, drafts, ticket_ref, created)


def click(
    conn,
    on: Card,
    kind: str,
    value: str,
    agent: str,
    clicked: datetime,
    *,
    subject: str = "",
    shown: datetime | None = None,
) -> StoredFeedback:
    chosen = on.drafts.get(value) if kind == "preference" else None
    feedback = Feedback(
        kind=kind,
        value=value,
        draft_set_id=on.id,
        agent_id=agent,
        clicked_at=clicked,
        subject=subject,
        draft_id=chosen,
    )
    event, created = store.record(
        conn,
        feedback,
        ticket_ref=on.ticket_ref,
        draft_ids=list(on.drafts.values()),
        shown_at=shown or on.shown_at,
    )
    assert created
    return event


def comment(conn, comment_id: int, ticket: int, role: str, public: bool, body: str, at):
    conn.execute(
        "INSERT INTO zendesk_tickets (ticket_id) VALUES (%s) ON CONFLICT DO NOTHING", (ticket,)
    )
    conn.execute(
        "INSERT INTO zendesk_comments (comment_id, ticket_id, author_role, public, body,"
        " body_redacted, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (comment_id, ticket, role, public, body, body, at),
    )


S1_B = "You can reset your password from the login page, then sign in again with the new one."
S2_A = "Your refund was issued today and should reach your card within five business days."
S4_A = "Our office is closed on public holidays."


def build_week(conn) -> None:
    """The week of 16 Nov 2026, with a little history before it and a little after."""
    # history: S_old and S_prev were drafted before the week
    old = card(conn, "zendesk:98", t(10, 17, 9))
    click(conn, old, "preference", "A", "U2", t(10, 18, 10))  # P1: 18 Oct, before the baseline
    click(conn, old, "preference", "B", "U4", t(11, 2, 10))  # P2: baseline week 2-9 Nov
    prev = card(conn, "zendesk:99", t(11, 9, 10))
    click(conn, prev, "preference", "A", "U1", t(11, 10, 10))  # P3: baseline week 9-16 Nov
    click(conn, prev, "adoption", "as_is", "U1", t(11, 16, 8))  # E17: in the week, not first

    # S0: drafted the Sunday before (A champion, B challenger), clicked in the week
    s0 = card(conn, "zendesk:100", t(11, 15, 20), DUEL)
    click(conn, s0, "preference", "A", "U3", t(11, 16, 9))  # E11: 46,800 s after shown
    click(conn, s0, "adoption", "as_is", "U2", t(11, 16, 9, 10))  # E12

    # S1: A champion, B challenger
    s1 = card(conn, "zendesk:101", t(11, 17, 9), DUEL, ("Your invoice is attached.", S1_B))
    click(conn, s1, "preference", "B", "U1", t(11, 17, 9, 0, 2))  # E1: 2 s, fast
    e2 = click(conn, s1, "adoption", "as_is", "U1", t(11, 17, 9, 1))  # E2
    e3 = click(conn, s1, "adoption", "edited", "U1", t(11, 17, 9, 5))  # E3 replaces E2
    assert e3.supersedes == e2.id
    click(conn, s1, "relevance", "relevant", "U1", t(11, 17, 9, 2), subject="chunk:1")  # E4
    click(conn, s1, "relevance", "not_relevant", "U1", t(11, 17, 9, 3), subject="chunk:2")  # E5
    click(conn, s1, "preference", "both_bad", "U3", t(11, 17, 15))  # E16

    # S2: A challenger, B champion; U2 first prefers B, then changes to A
    s2 = card(
        conn, "zendesk:102", t(11, 18, 10), DUEL_B_CHAMPION, (S2_A, "We escalated it to billing.")
    )
    e6a = click(conn, s2, "preference", "B", "U2", t(11, 18, 10, 0, 20))  # E6a: 20 s
    e6 = click(conn, s2, "preference", "A", "U2", t(11, 18, 10, 0, 30))  # E6 replaces E6a
    assert e6.supersedes == e6a.id
    click(conn, s2, "adoption", "not_used", "U2", t(11, 18, 10, 1))  # E7
    click(conn, s2, "missing_knowledge", "url", "U2", t(11, 18, 10, 2))  # E8
    click(conn, s2, "preference", "tie", "U3", t(11, 18, 11))  # E9
    # E13 relevant on the last evening, replaced by E14 after the week has ended
    click(conn, s2, "relevance", "relevant", "U3", t(11, 22, 23, 30), subject="chunk:3")
    click(conn, s2, "relevance", "not_relevant", "U3", t(11, 23, 8), subject="chunk:3")

    # S3: the second revision of ticket 101, champion against champion (not a duel)
    s3 = card(conn, "zendesk:101", t(11, 19, 12))
    click(conn, s3, "preference", "A", "U1", t(11, 19, 12, 0, 10))  # E10: 10 s

    # S4: a duel nobody clicked; S5: drafted on the last evening, clicked after the week
    s4 = card(conn, "zendesk:104", t(11, 20, 8), DUEL, (S4_A, "Shipping to Canada takes a week."))
    s5 = card(conn, "zendesk:105", t(11, 22, 23))
    click(conn, s5, "preference", "A", "U1", t(11, 23, 1))  # E15: after the week

    # replies in Zendesk
    comment(conn, 1, 101, "customer", True, "Still waiting?", t(11, 17, 9, 10))
    comment(conn, 2, 101, "agent", False, "Customer is on the premium plan.", t(11, 17, 9, 20))
    reformatted = "YOU can reset your  password from the LOGIN page,\n then sign in again with"
    comment(conn, 3, 101, "agent", True, f"{reformatted} the new one.", t(11, 17, 9, 30))
    comment(conn, 4, 101, "agent", True, "Anything else?", t(11, 19, 13))
    edited = (
        "Good news: your refund was issued today and should reach your card within"
        " seven to ten business days. Thanks!"
    )
    comment(conn, 5, 102, "agent", True, edited, t(11, 18, 12))
    comment(conn, 6, 104, "agent", True, S4_A, t(11, 20, 7))  # before the drafts existed
    forwarded = "I have forwarded your question to a specialist who will reply tomorrow."
    comment(conn, 7, 104, "agent", True, forwarded, t(11, 20, 10))
    comment(conn, 8, 105, "agent", True, "zendesk:105 draft A.", t(11, 23, 9))  # after the week
    comment(conn, 9, 100, "agent", True, "zendesk:100 draft B.", t(11, 16, 10))  # S0: last week
    # what the connector derived from each public agent reply with drafts before it (comment 6
    # came before S4 existed, so it has none); the digest counts these, it does not re-derive
    for comment_id, ticket, on, adoption in (
        (3, 101, s1, "as_is"),
        (4, 101, s3, "not_used"),  # a later reply on the same ticket: only the first counts
        (5, 102, s2, "edited"),
        (7, 104, s4, "not_used"),
        (8, 105, s5, "as_is"),
        (9, 100, s0, "as_is"),
    ):
        derived(conn, comment_id, ticket, on.id, adoption)


def derived(conn, comment_id: int, ticket: int, set_id: int, adoption: str) -> None:
    conn.execute(
        "INSERT INTO zendesk_derived_adoptions (comment_id, ticket_id, draft_set_id,"
        " closest_label, similarity_a, similarity_b, adoption) VALUES (%s, %s, %s, 'A', 0, 0, %s)",
        (comment_id, ticket, set_id, adoption),
    )


@pytest.fixture
def week_db(db):
    with db.connection() as conn:
        build_week(conn)
    return db


def test_the_week_figures_match_the_hand_count(week_db):
    with week_db.connection() as conn:
        m = week_metrics(conn, WEEK)

    assert m.window == WEEK
    # created in the week: S1, S2, S3, S4, S5 (S0 was created on the Sunday before)
    assert m.draft_sets == 5
    # zendesk:101 (S1, S3), :102, :104, :105
    assert m.drafted_tickets == 4
    # E17, E11, E12, E1, E2, E3, E4, E5, E16, E6a, E6, E7, E8, E9, E13, E10 (E14, E15 later)
    assert m.clicks == 16
    # standing: E17 as_is, E12 as_is, E3 edited (E2 replaced), E7 not_used
    assert m.adoption == {"as_is": 2, "edited": 1, "not_used": 1}
    assert m.adoption_rate == pytest.approx(3 / 4)
    # standing: E11 A, E6 A, E10 A (E6a replaced), E1 B, E9 tie, E16 both_bad
    assert m.preference == {"A": 3, "B": 1, "tie": 1, "both_bad": 1}
    # duels: S0 E11 A=champion; S1 E1 B=challenger (E16 both_bad not counted);
    # S2 E6 A=challenger (E6a B=champion was replaced), E9 tie; S3 is not a duel
    assert (m.challenger_wins, m.champion_wins, m.ties) == (2, 1, 1)
    assert m.win_rate == pytest.approx((2 + 0.5 * 1) / 4)
    # E4 relevant, E5 not relevant; E13 was replaced by E14 (after the week: it still counts)
    assert m.relevance_precision == pytest.approx(1 / 2)
    # of S1..S5, by clicks before the week's end: preference S1 S2 S3; adoption S1 S2;
    # relevance S1 S2 (E13); missing S2; S4 never clicked, S5 only after the end
    assert m.coverage == pytest.approx(
        {"preference": 3 / 5, "adoption": 2 / 5, "relevance": 2 / 5, "missing_knowledge": 1 / 5}
    )
    assert m.missing_rate == pytest.approx(1 / 5)
    # first clicks falling in the week: S0 46,800 s, S1 2 s, S2 20 s (E6a), S3 10 s;
    # S_prev's first click was last week. Median of 2, 10, 20, 46,800 = (10 + 20) / 2
    assert m.median_first_click_s == pytest.approx(15.0)


def test_sent_replies_count_the_connectors_adoption_of_the_first_reply(week_db):
    # 101: the first derived reply is comment 3 (as_is); comment 4 (not_used) came later
    # 102: comment 5 -> edited; 104: comment 7 -> not_used
    # 105: the reply came after the week's end; 100: S0 was drafted the week before
    with week_db.connection() as conn:
        m = week_metrics(conn, WEEK, sent_adoption=zendesk_store.sent_adoption)
        unconnected = week_metrics(conn, WEEK)
    assert m.sent_adoption == {"as_is": 1, "edited": 1, "not_used": 1}
    # without a helpdesk wired in, no reply counts as sent
    assert unconnected.sent_adoption == {"as_is": 0, "edited": 0, "not_used": 0}


def test_agents_are_listed_busiest_first_with_their_shares(week_db):
    with week_db.connection() as conn:
        agents = week_metrics(conn, WEEK).agents

    assert [a.agent_id for a in agents] == ["U1", "U2", "U3", "U4"]
    u1, u2, u3, u4 = agents
    # U1: E17 E1 E2 E3 E4 E5 E10; tickets 99 and 101; baseline P3 only: 1 / 4 weeks;
    # buttons E17 as_is, E1 B, E2 as_is, E3 edited, E10 A: as_is 2 of 5; fast E1 only
    assert (u1.clicks, u1.tickets, u1.previous_clicks) == (7, 2, 0.25)
    assert (u1.favourite, u1.button_clicks) == ("as_is", 5)
    assert u1.same_button_share == pytest.approx(2 / 5)
    assert u1.fast_share == pytest.approx(1 / 7)
    # U2: E12 E6a E6 E7 E8; tickets 100 and 102; P1 (18 Oct) is before the 4-week baseline;
    # buttons as_is, B, A, not_used: one each, ties broken by value
    assert (u2.clicks, u2.tickets, u2.previous_clicks) == (5, 2, 0.0)
    assert (u2.favourite, u2.button_clicks) == ("A", 4)
    assert u2.same_button_share == pytest.approx(1 / 4)
    assert u2.fast_share == 0.0
    # U3: E11 E16 E9 E13 on tickets 100, 101, 102
    assert (u3.clicks, u3.tickets, u3.button_clicks) == (4, 3, 3)
    assert u3.same_button_share == pytest.approx(1 / 3)
    # U4 clicked only in the baseline (P2): listed with nothing this week
    assert (u4.clicks, u4.tickets, u4.previous_clicks) == (0, 0, 0.25)
    assert (u4.same_button_share, u4.fast_share, u4.favourite) == (None, None, None)
    assert all(a.flags == () for a in agents)


def test_the_trend_is_the_four_weeks_before_then_the_week(week_db):
    with week_db.connection() as conn:
        trend = weekly_trend(conn, WEEK)

    assert [w.window for w in trend] == [WEEK.previous(n) for n in (4, 3, 2, 1, 0)]
    assert trend[0].window == Window(t(10, 19), t(10, 26))
    assert [w.window.label for w in trend][-2:] == ["9–15 Nov 2026", "16–22 Nov 2026"]
    # P1 (18 Oct) is before the first week; P2 on 2 Nov; P3 on 10 Nov
    assert [w.clicks for w in trend] == [0, 0, 1, 1, 16]
    # S_prev (9 Nov) and S0 (15 Nov) were drafted the week before
    assert [w.draft_sets for w in trend] == [0, 0, 0, 2, 5]


def test_an_empty_window_gives_zeros_and_none(db):
    with db.connection() as conn:
        m = week_metrics(conn, week_of(date(2030, 1, 1)))
    assert (m.draft_sets, m.drafted_tickets, m.clicks) == (0, 0, 0)
    assert m.adoption == m.sent_adoption == {"as_is": 0, "edited": 0, "not_used": 0}
    assert m.preference == {"A": 0, "B": 0, "tie": 0, "both_bad": 0}
    assert (m.challenger_wins, m.champion_wins, m.ties) == (0, 0, 0)
    assert m.coverage == dict.fromkeys(
        ("preference", "adoption", "relevance", "missing_knowledge"), 0.0
    )
    nones = (m.adoption_rate, m.win_rate, m.relevance_precision, m.missing_rate)
    assert nones == (None, None, None, None)
    assert m.median_first_click_s is None
    assert m.agents == []


# --- fatigue -----------------------------------------------------------------------------


def burst(
    conn,
    agent: str,
    at: datetime,
    values: list[tuple[str, str]],
    seconds: list[float] | None = None,
) -> None:
    """``(kind, value)`` clicks by one agent on one card, each in its own slot, one a minute;
    each came ``seconds[i]`` after the card showed (60 s unless told)."""
    on = card(conn, f"zendesk:{agent}-{at:%m%d}", at)
    for i, (kind, value) in enumerate(values):
        clicked = at + timedelta(minutes=i + 1)
        wait = timedelta(seconds=seconds[i] if seconds else 60)
        click(conn, on, kind, value, agent, clicked, subject=f"q{i}", shown=clicked - wait)


def relevance(n: int) -> list[tuple[str, str]]:
    return [("relevance", ("relevant", "not_relevant")[i % 2]) for i in range(n)]


def pref(value: str, n: int) -> list[tuple[str, str]]:
    return [("preference", value)] * n


def flags_of(conn, **kwargs) -> dict[str, tuple[str, ...]]:
    return {a.agent_id: a.flags for a in week_metrics(conn, WEEK, **kwargs).agents}


def test_same_button_flag_fires_at_the_threshold(db):
    with db.connection() as conn:
        # 8 'tie' of 10 buttons = 0.8; the 5 relevance clicks are not buttons (else 8 / 15)
        burst(conn, "tie_fan", t(11, 17), pref("tie", 8) + [("adoption", "edited")] * 2)
        burst(conn, "tie_fan", t(11, 18), relevance(5))
        # 8 of 9 = 0.89, but fewer than 10 buttons
        burst(conn, "nine", t(11, 17), pref("tie", 8) + pref("A", 1))
        # 7 of 10 = 0.7
        burst(conn, "varied", t(11, 17), pref("tie", 7) + pref("B", 3))
        flags = flags_of(conn)
        lowered = flags_of(conn, fatigue=FatigueRules(same_button_min_clicks=9))
    assert flags == {"tie_fan": ("clicked 'Tie' on 80% of cards",), "nine": (), "varied": ()}
    assert lowered["nine"] == ("clicked 'Tie' on 89% of cards",)
    assert lowered["varied"] == ()


def test_fast_click_flag_fires_at_the_threshold(db):
    with db.connection() as conn:
        # 3 of 10 under 3 s = 0.3 (3.0 s itself is not under 3 s)
        burst(conn, "quick", t(11, 17), relevance(10), [2.9] * 3 + [3.0] * 7)
        # 2 of 10 = 0.2
        burst(conn, "borderline", t(11, 17), relevance(10), [2.9] * 2 + [3.0] * 8)
        # 3 of 9 = 0.33, but fewer than 10 clicks
        burst(conn, "few", t(11, 17), relevance(9), [1.0] * 3 + [60.0] * 6)
        week = {a.agent_id: a for a in week_metrics(conn, WEEK).agents}
        slower = flags_of(conn, fast_click_s=3.5)
    assert week["quick"].fast_share == pytest.approx(0.3)
    assert week["quick"].same_button_share is None  # relevance clicks only
    assert {k: a.flags for k, a in week.items()} == {
        "quick": ("30% of clicks under 3 s",),
        "borderline": (),
        "few": (),
    }
    # with 3.5 s every borderline click is fast: 10 of 10
    assert slower["borderline"] == ("100% of clicks under 3.5 s",)


def test_volume_flag_fires_when_clicks_halve(db):
    baseline = [t(10, 19), t(10, 26), t(11, 2), t(11, 9)]  # Mondays of the 4 weeks before
    with db.connection() as conn:
        for monday in baseline:
            burst(conn, "dropping", monday, relevance(5))  # 20 / 4 = 5.0 a week
            burst(conn, "gone", monday, relevance(5))  # 5.0 a week, then nothing
            burst(conn, "half", monday, relevance(6))  # 6.0 a week
        burst(conn, "quiet", t(11, 9), relevance(19))  # 4.75 a week: too few to judge
        burst(conn, "old_timer", t(10, 12), relevance(20))  # before the baseline
        burst(conn, "dropping", t(11, 18), relevance(2))  # 2 < 0.5 * 5.0
        burst(conn, "half", t(11, 18), relevance(3))  # 3 is not < 0.5 * 6.0
        agents = {a.agent_id: a for a in week_metrics(conn, WEEK).agents}
    assert agents["dropping"].previous_clicks == pytest.approx(5.0)
    assert agents["dropping"].flags == ("volume down 60% vs the previous 4 weeks",)
    assert agents["gone"].clicks == 0
    assert agents["gone"].flags == ("volume down 100% vs the previous 4 weeks",)
    assert agents["half"].flags == ()
    assert (agents["quiet"].clicks, agents["quiet"].flags) == (0, ())
    assert "old_timer" not in agents


# --- windows -----------------------------------------------------------------------------


def test_week_of_a_sunday_and_of_a_monday_midnight():
    sunday_night = t(11, 22, 23, 59, 59)
    assert week_of(sunday_night) == WEEK
    assert week_of(date(2026, 11, 22)) == WEEK
    assert week_of(t(11, 23)) == Window(t(11, 23), t(11, 30))
    # 00:30 on Monday in UTC+2 is still Sunday in UTC
    assert week_of(datetime(2026, 11, 23, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == WEEK


def test_last_full_week_is_the_one_that_ended_by_now():
    assert last_full_week(t(11, 22, 12)) == Window(t(11, 9), t(11, 16))  # a Sunday
    assert last_full_week(t(11, 23)) == WEEK  # Monday 00:00: the week has just ended
    assert last_full_week(t(11, 23, 0, 0, 1)) == WEEK


def test_labels_and_previous_windows():
    assert WEEK.label == "16–22 Nov 2026"
    assert week_of(date(2026, 12, 1)).label == "30 Nov – 6 Dec 2026"
    assert week_of(date(2026, 12, 31)).label == "28 Dec 2026 – 3 Jan 2027"
    assert Window(MON, t(11, 17)).label == "16 Nov 2026"
    assert WEEK.previous() == Window(t(11, 9), t(11, 16))
    assert WEEK.previous(4) == Window(t(10, 19), t(10, 26))


def test_windows_refuse_naive_or_empty_spans():
    with pytest.raises(ValueError):
        Window(datetime(2026, 11, 16), t(11, 23))
    with pytest.raises(ValueError):
        week_of(datetime(2026, 11, 16))
    with pytest.raises(ValueError):
        Window(MON, MON)


# --- the last retrain --------------------------------------------------------------------


def run(conn, started: datetime, status: str, **fields) -> int:
    run_id = store.start_run(conn, "schedule", started, {})
    if status != "running":
        store.finish_run(conn, run_id, status, **fields)
    conn.execute("UPDATE flywheel_runs SET started_at = %s WHERE id = %s", (started, run_id))
    return run_id


def test_last_retrain_is_the_newest_run_started_before(db):
    decisions = {"retriever": {"promoted": True, "reason": "recall@5 +0.04"}}
    metrics = {"retriever": {"champion": {"recall@5": 0.61}, "challenger": {"recall@5": 0.65}}}
    with db.connection() as conn:
        running = run(conn, t(11, 23, 2), "running")
        first = run(conn, t(11, 1, 2), "succeeded", decisions=decisions, metrics=metrics)
        # inserted before the failed run, started after it: time decides, not the id
        edge = run(conn, t(11, 22), "not_enough_data")
        failed = run(conn, t(11, 15, 2), "failed", error="CUDA out of memory")

    with db.connection() as conn:
        assert last_retrain(conn, t(11, 1, 2)) is None  # started at `before`: not before it
        summary = last_retrain(conn, t(11, 10))
        assert last_retrain(conn, t(11, 22)).run_id == failed
        assert last_retrain(conn, t(11, 23)).run_id == edge
        latest = last_retrain(conn, t(11, 24))

    assert summary.run_id == first
    assert (summary.status, summary.trigger, summary.error) == ("succeeded", "schedule", None)
    assert (summary.decisions, summary.metrics) == (decisions, metrics)
    assert summary.finished_at is not None
    assert (latest.run_id, latest.status, latest.finished_at) == (running, "running", None)
    with db.connection() as conn:
        assert last_retrain(conn, t(11, 16)).error == "CUDA out of memory"


def closed_form(conn, on: Card, agent: str, at: datetime, view: str) -> None:
    closed = Dismissal("adoption", on.id, agent, view, at)
    assert store.record_dismissal(conn, closed)
    assert not store.record_dismissal(conn, closed), "Slack's retry of view_closed counts once"


def test_adoption_forms_closed_unsent_are_counted_and_flag_a_tired_agent(db):
    """Adoptions are stored on the click; the form asking why can be closed. The digest counts
    standing adoptions without a reason, each agent's closed forms, and flags an agent who
    closes most of them (here 5 of 6 cards, against one of two for a colleague)."""
    with db.connection() as conn:
        for n in range(6):
            on = card(conn, f"zendesk:{500 + n}", t(11, 17, 9 + n))
            click(conn, on, "adoption", "not_used", "UTIRED", t(11, 17, 9 + n, 5))
            if n < 5:
                closed_form(conn, on, "UTIRED", t(11, 17, 9 + n, 6), f"V{n}")
        for n, reason in enumerate((None, "saved_time")):
            on = card(conn, f"zendesk:{600 + n}", t(11, 18, 9 + n))
            click(conn, on, "adoption", "as_is", "UFRESH", t(11, 18, 9 + n, 5))
            if reason:  # the form sent: its reasons supersede the click
                answer = Feedback(
                    kind="adoption",
                    value="as_is",
                    draft_set_id=on.id,
                    agent_id="UFRESH",
                    clicked_at=t(11, 18, 9 + n, 5),
                    rationale={"reason": reason},
                )
                store.record(
                    conn, answer, ticket_ref=on.ticket_ref, draft_ids=[], shown_at=on.shown_at
                )
            else:
                closed_form(conn, on, "UFRESH", t(11, 18, 9 + n, 6), f"W{n}")
        m = week_metrics(conn, WEEK)
    agents = {a.agent_id: a for a in m.agents}
    assert m.adoption_without_reason == 7  # six of UTIRED's, one of UFRESH's
    tired, fresh = agents["UTIRED"], agents["UFRESH"]
    assert (tired.adopted, tired.closed_adoption_forms, tired.closed_unsent) == (6, 5, 5)
    assert (fresh.adopted, fresh.closed_adoption_forms) == (2, 1)
    assert "closed 5 of 6 adoption forms without a reason" in tired.flags
    assert not any("forms" in f for f in fresh.flags)


def test_a_reply_sent_in_zendesk_is_feedback_but_not_an_agents_click(db):
    """The reply sent is stored as feedback (the judge and the datasets read it), yet neither
    the week's clicks nor the card's answers count it: it is reported as adoption from the
    replies sent."""
    with db.connection() as conn:
        on = card(conn, "zendesk:700", t(11, 17, 9))
        click(conn, on, "preference", "A", "UALICE", t(11, 17, 9, 5))
        reply = SentReply(
            ticket_ref=on.ticket_ref,
            draft_set_id=on.id,
            author="9001",
            sent_at=t(11, 17, 9, 20),
            body=f"{on.ticket_ref} draft A.",
            closest_label="A",
            adoption="as_is",
            similarity={"A": 1.0, "B": 0.4},
            comment_id=1,
        )
        stored = record_sent_reply(conn, reply)
        m = week_metrics(conn, WEEK)
        shown = store.current(conn, on.id)
    assert stored is not None and stored.draft_id == on.drafts["A"]
    assert m.clicks == 1 and m.adoption == {"as_is": 0, "edited": 0, "not_used": 0}
    assert [a.agent_id for a in m.agents] == ["UALICE"]
    assert [(e.kind, e.agent_id) for e in shown] == [("preference", "UALICE")]
