"""The weekly figures a manager reads in the digest, counted in SQL for any date window.

What belongs to a window:

- its *events* are the clicks with ``clicked_at`` in [start, end);
- an answer *stands* when no later click in its slot replaced it, whenever that click came:
  the digest says what agents think now, as the knowledge-gap report (``flywheel.gaps``) does;
- its *draft sets* are those created in it. What happened to them (which questions were
  answered, the reply sent in Zendesk) is counted up to the window's end only, so the week that
  just ended is measured with the same yardstick as the four before it and the trend shows no
  dip that is only the newest tickets not having been answered yet.

Adoption from the replies sent is what the Zendesk connector derived when it read each reply;
the connector counts it from its own tables (a ``SentAdoption`` the composition root hands in),
and the draft sets and their duels come from ``rag.store``. This module holds the digest's
read-only SQL over the flywheel's own tables, as ``flywheel/store.py`` holds the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from flywheel import store
from flywheel.feedback import VALUES
from rag import store as rag_store
from rag.store import DraftSetStamp

WEEK = timedelta(days=7)
# adoption from the replies sent, per drafted ticket: the helpdesk connector counts it
SentAdoption = Callable[[psycopg.Connection, Sequence[DraftSetStamp], datetime], dict[str, int]]
KINDS = tuple(VALUES)  # preference, adoption, relevance, missing_knowledge
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# how the buttons read on the Slack card, for the flags managers read
BUTTON_NAMES = {
    "A": "Prefer A",
    "B": "Prefer B",
    "tie": "Tie",
    "both_bad": "Both bad",
    "as_is": "Used as is",
    "edited": "Edited",
    "not_used": "Not used",
}


# --- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A half-open span [start, end) of UTC time; aware datetimes in other zones are converted."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            object.__setattr__(self, name, _utc(getattr(self, name)))
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts: {self.start} .. {self.end}")

    @property
    def label(self) -> str:
        """'16–22 Nov 2026': the days covered, the last one being the day before ``end``."""
        first = self.start.date()
        last = (self.end - timedelta(microseconds=1)).date()
        if first == last:
            return _day(last, year=True)
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{_day(last, year=True)}"
        if first.year == last.year:
            return f"{_day(first)} – {_day(last, year=True)}"
        return f"{_day(first, year=True)} – {_day(last, year=True)}"

    def previous(self, weeks: int = 1) -> Window:
        """The same span ``weeks`` weeks earlier (for a week: the week before)."""
        return Window(self.start - weeks * WEEK, self.end - weeks * WEEK)


def week_of(moment: datetime | date) -> Window:
    """The ISO week, Monday 00:00 UTC to the next Monday, that contains ``moment``."""
    day = _utc(moment).date() if isinstance(moment, datetime) else moment
    monday = datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)
    return Window(monday, monday + WEEK)


def last_full_week(now: datetime) -> Window:
    """The most recent ISO week that ended at or before ``now`` (on a Monday 00:00: the one
    that just ended)."""
    return week_of(now).previous()


def _utc(moment: datetime) -> datetime:
    # a naive datetime would be read in the database session's time zone: refuse it
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; use an aware datetime (UTC)")
    return moment.astimezone(UTC)


def _day(day: date, *, year: bool = False) -> str:
    text = f"{day.day} {MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if year else text


# --- what the figures are made of --------------------------------------------------------


@dataclass(frozen=True)
class FatigueRules:
    """When an agent's clicks look tired enough to show the manager a flag."""

    volume_drop: float = 0.5  # clicks below this share of their usual weekly volume
    volume_min_previous: float = 5.0  # ... only for agents who usually click this much
    baseline_weeks: int = 4  # "usual": the mean over this many weeks before the window
    same_button_share: float = 0.8  # one value on at least this share of their buttons
    same_button_min_clicks: int = 10  # ... out of at least this many preference+adoption clicks
    fast_share: float = 0.3  # at least this share of clicks came quicker than fast_click_s
    fast_min_clicks: int = 10  # ... out of at least this many clicks
    closed_share: float = 0.5  # adoption forms closed unsent on at least this share of cards
    closed_min: int = 5  # ... and at least this many of them

    def flags(self, agent: AgentWeek, fast_click_s: float) -> tuple[str, ...]:
        """The sentences a manager reads beside the agent; empty when nothing looks off."""
        flags = []
        usual = agent.previous_clicks
        if usual >= self.volume_min_previous and agent.clicks < self.volume_drop * usual:
            drop = 1 - agent.clicks / usual
            flags.append(f"volume down {drop:.0%} vs the previous {self.baseline_weeks} weeks")
        same = agent.same_button_share
        if (
            same is not None
            and same >= self.same_button_share
            and agent.button_clicks >= self.same_button_min_clicks
        ):
            name = BUTTON_NAMES.get(agent.favourite or "", agent.favourite)
            flags.append(f"clicked '{name}' on {same:.0%} of cards")
        fast = agent.fast_share
        if fast is not None and fast >= self.fast_share and agent.clicks >= self.fast_min_clicks:
            flags.append(f"{fast:.0%} of clicks under {fast_click_s:g} s")
        closed, adopted = agent.closed_adoption_forms, agent.adopted
        if closed >= self.closed_min and closed >= self.closed_share * max(adopted, 1):
            flags.append(f"closed {closed} of {adopted} adoption forms without a reason")
        return tuple(flags)


@dataclass(frozen=True)
class AgentWeek:
    """One agent's week, with what hints at annotation fatigue."""

    agent_id: str
    clicks: int
    tickets: int  # distinct ticket_refs clicked
    previous_clicks: float  # mean clicks per window over the baseline weeks before
    same_button_share: float | None  # share of preference+adoption clicks on the favourite
    fast_share: float | None  # share of clicks quicker than fast_click_s after the card showed
    flags: tuple[str, ...]
    favourite: str | None = None  # the preference/adoption value they clicked most
    button_clicks: int = 0  # their preference+adoption clicks (same_button_share's base)
    adopted: int = 0  # cards they answered "was it used?" on
    closed_adoption_forms: int = 0  # of which they closed the reasons' form unsent
    closed_unsent: int = 0  # every modal they closed unsent (adoption, missing knowledge)


@dataclass(frozen=True)
class WeekMetrics:
    """Everything the digest says about one window; see the module docstring for what counts."""

    window: Window
    draft_sets: int
    drafted_tickets: int
    clicks: int
    adoption: dict[str, int]
    adoption_rate: float | None
    adoption_without_reason: int  # standing adoptions whose form was closed unsent
    sent_adoption: dict[str, int]
    preference: dict[str, int]
    challenger_wins: int
    champion_wins: int
    ties: int
    win_rate: float | None
    relevance_precision: float | None
    missing_rate: float | None
    coverage: dict[str, float]
    median_first_click_s: float | None
    agents: list[AgentWeek]


@dataclass(frozen=True)
class RetrainSummary:
    """The last flywheel run as the digest reports it."""

    run_id: int
    status: str  # succeeded / failed / not_enough_data / running
    trigger: str
    finished_at: datetime | None
    decisions: dict[str, dict]  # kind -> {"promoted": bool, "reason": str, ...}
    metrics: dict[str, dict]  # kind -> {"champion": {...}, "challenger": {...}}
    error: str | None
    counts: dict[str, Any] = field(default_factory=dict)  # the run's (e.g. "memory")


# --- the figures -------------------------------------------------------------------------


def week_metrics(
    conn: psycopg.Connection,
    window: Window,
    *,
    fast_click_s: float = 3.0,
    fatigue: FatigueRules | None = None,
    sent_adoption: SentAdoption | None = None,
) -> WeekMetrics:
    """The window's figures; reads only, so any past week can be recomputed. Without
    ``sent_adoption`` (no helpdesk connected) no reply counts as sent."""
    rules = fatigue or FatigueRules()
    params = {"start": window.start, "end": window.end}
    clicks, standing = _answers(conn, params)
    drafted = rag_store.draft_sets_created(conn, window.start, window.end)
    sets = len(drafted)
    covered = _covered(conn, drafted, window.end)
    duel = _duels(conn, params)
    return WeekMetrics(
        window=window,
        draft_sets=sets,
        drafted_tickets=len({s.ticket_ref for s in drafted}),
        clicks=clicks,
        adoption=standing["adoption"],
        adoption_rate=_share(standing["adoption"], ("as_is", "edited")),
        adoption_without_reason=conn.execute(UNEXPLAINED, params).fetchone()[0],
        sent_adoption=_sent_adoption(conn, drafted, window.end, sent_adoption),
        preference=standing["preference"],
        challenger_wins=duel["challenger"],
        champion_wins=duel["champion"],
        ties=duel["tie"],
        win_rate=_win_rate(duel),
        relevance_precision=_share(standing["relevance"], ("relevant",)),
        missing_rate=covered["missing_knowledge"] / sets if sets else None,
        coverage={kind: covered[kind] / sets if sets else 0.0 for kind in KINDS},
        median_first_click_s=_median_first_click(conn, params),
        agents=_agents(conn, window, fast_click_s, rules),
    )


def weekly_trend(
    conn: psycopg.Connection,
    window: Window,
    weeks: int = 4,
    *,
    fast_click_s: float = 3.0,
    fatigue: FatigueRules | None = None,
    sent_adoption: SentAdoption | None = None,
) -> list[WeekMetrics]:
    """The ``weeks`` windows before ``window``, then ``window`` itself: oldest first."""
    return [
        week_metrics(
            conn,
            window.previous(back),
            fast_click_s=fast_click_s,
            fatigue=fatigue,
            sent_adoption=sent_adoption,
        )
        for back in range(weeks, -1, -1)
    ]


def last_retrain(conn: psycopg.Connection, before: datetime) -> RetrainSummary | None:
    """The newest flywheel run started before ``before``, whatever its outcome."""
    run = (
        conn.cursor(row_factory=class_row(store.Run))
        .execute(
            f"SELECT {store.RUN_COLUMNS} FROM flywheel_runs WHERE started_at < %s"
            " ORDER BY started_at DESC, id DESC LIMIT 1",
            (before,),
        )
        .fetchone()
    )
    if run is None:
        return None
    return RetrainSummary(
        run_id=run.id,
        status=run.status,
        trigger=run.trigger,
        finished_at=run.finished_at,
        decisions=run.decisions,
        metrics=run.metrics,
        error=run.error,
        counts=run.counts,
    )


# --- SQL ---------------------------------------------------------------------------------

# The window's clicks, each marked standing unless a later click in its slot (draft set, kind,
# subject, agent) replaced it: store.record makes every new click in a slot supersede the
# slot's latest, so this is the `supersedes` chain, read through the slot index. Only the
# agents' own clicks (in Slack, or simulated ones): a reply sent in Zendesk (source 'zendesk')
# is feedback too, but the digest counts it apart, as adoption from the replies sent.
CLICKED = """
clicked AS (
    SELECT e.*, NOT EXISTS (
        SELECT 1 FROM feedback_events later
        WHERE later.draft_set_id = e.draft_set_id AND later.kind = e.kind
          AND later.subject = e.subject AND later.agent_id = e.agent_id AND later.id > e.id
    ) AS standing
    FROM feedback_events e
    WHERE e.clicked_at >= %(start)s AND e.clicked_at < %(end)s AND e.source <> 'zendesk'
)"""

ANSWERS = f"""
WITH {CLICKED}
SELECT kind, value, count(*), count(*) FILTER (WHERE standing)
FROM clicked GROUP BY kind, value
"""

# Standing adoptions of the window that carry no reason: the agent closed the form unsent.
UNEXPLAINED = f"""
WITH {CLICKED}
SELECT count(*) FROM clicked
WHERE kind = 'adoption' AND standing AND NOT (rationale ? 'reason')
"""

# The kinds of click each draft set got before the window's end.
KINDS_CLICKED = """
SELECT draft_set_id, array_agg(DISTINCT kind) FROM feedback_events
WHERE draft_set_id = ANY(%(sets)s) AND clicked_at < %(end)s AND source <> 'zendesk'
GROUP BY draft_set_id
"""

# The window's standing preferences (duels are told apart from the drafts' producers after).
PREFERENCES = f"""
WITH {CLICKED}
SELECT draft_set_id, value FROM clicked WHERE kind = 'preference' AND standing
"""

# Each draft set's first click, counted in the window that click fell in (once per set).
FIRST_CLICK = """
WITH firsts AS (
    SELECT DISTINCT ON (e.draft_set_id) e.clicked_at, e.shown_at
    FROM feedback_events e
    WHERE e.source <> 'zendesk' AND e.draft_set_id IN (
        SELECT draft_set_id FROM feedback_events
        WHERE clicked_at >= %(start)s AND clicked_at < %(end)s AND source <> 'zendesk'
    )
    ORDER BY e.draft_set_id, e.clicked_at, e.id
)
SELECT percentile_cont(0.5) WITHIN GROUP (
    ORDER BY extract(epoch FROM clicked_at - shown_at)::float8
)
FROM firsts WHERE clicked_at >= %(start)s
"""

AGENTS = f"""
WITH {CLICKED},
baseline AS (
    SELECT e.agent_id, count(*)::float8 / %(weeks)s AS previous_clicks
    FROM feedback_events e
    JOIN unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS p (lo, hi)
      ON e.clicked_at >= p.lo AND e.clicked_at < p.hi
    WHERE e.source <> 'zendesk'
    GROUP BY e.agent_id
),
week AS (
    SELECT agent_id, count(*) AS clicks, count(DISTINCT ticket_ref) AS tickets,
        count(*) FILTER (WHERE kind IN ('preference', 'adoption')) AS buttons,
        count(*) FILTER (WHERE clicked_at - shown_at < make_interval(secs => %(fast)s)) AS fast,
        count(DISTINCT draft_set_id) FILTER (WHERE kind = 'adoption') AS adopted
    FROM clicked GROUP BY agent_id
),
closed AS (
    SELECT agent_id, count(*) FILTER (WHERE modal = 'adoption') AS adoption, count(*) AS modals
    FROM feedback_dismissals WHERE closed_at >= %(start)s AND closed_at < %(end)s
    GROUP BY agent_id
),
favourite AS (
    SELECT DISTINCT ON (agent_id) agent_id, value, count(*) AS times
    FROM clicked WHERE kind IN ('preference', 'adoption')
    GROUP BY agent_id, value ORDER BY agent_id, count(*) DESC, value
)
SELECT agent_id, coalesce(w.clicks, 0) AS clicks, coalesce(w.tickets, 0),
    coalesce(b.previous_clicks, 0), coalesce(w.buttons, 0), f.value, coalesce(f.times, 0),
    coalesce(w.fast, 0), coalesce(w.adopted, 0), coalesce(c.adoption, 0), coalesce(c.modals, 0)
FROM week w FULL JOIN baseline b USING (agent_id) LEFT JOIN favourite f USING (agent_id)
    LEFT JOIN closed c USING (agent_id)
ORDER BY clicks DESC, agent_id
"""


# --- the parts ---------------------------------------------------------------------------


def _answers(conn: psycopg.Connection, params: dict) -> tuple[int, dict[str, dict[str, int]]]:
    """All clicks of the window, and the standing answers per kind and value (all present)."""
    standing = {kind: dict.fromkeys(values, 0) for kind, values in VALUES.items()}
    clicks = 0
    for kind, value, count, stands in conn.execute(ANSWERS, params):
        clicks += count
        standing[kind][value] = stands
    return clicks, standing


def _covered(
    conn: psycopg.Connection, sets: Sequence[DraftSetStamp], end: datetime
) -> dict[str, int]:
    """How many of the window's draft sets got each kind of click."""
    params = {"sets": [s.id for s in sets], "end": end}
    kinds = dict(conn.execute(KINDS_CLICKED, params).fetchall())
    return {kind: sum(1 for s in sets if kind in kinds.get(s.id, ())) for kind in KINDS}


def _duels(conn: psycopg.Connection, params: dict) -> dict[str, int]:
    """Standing preferences on sets whose two drafts came from the champion and the challenger."""
    preferences = conn.execute(PREFERENCES, params).fetchall()
    challenger_of = rag_store.challenger_labels(conn, [set_id for set_id, _ in preferences])
    duel = {"challenger": 0, "champion": 0, "tie": 0}
    for set_id, value in preferences:
        label = challenger_of.get(set_id)
        if label is None or value == "both_bad":
            continue
        duel["tie" if value == "tie" else "challenger" if value == label else "champion"] += 1
    return duel


def _win_rate(duel: dict[str, int]) -> float | None:
    """The challenger's share of champion-vs-challenger preferences, a tie counting half."""
    total = sum(duel.values())
    return (duel["challenger"] + 0.5 * duel["tie"]) / total if total else None


def _median_first_click(conn: psycopg.Connection, params: dict) -> float | None:
    return conn.execute(FIRST_CLICK, params).fetchone()[0]


def _agents(
    conn: psycopg.Connection, window: Window, fast_click_s: float, rules: FatigueRules
) -> list[AgentWeek]:
    """Agents who clicked in the window or in the baseline weeks before it (a silent week is
    the strongest volume drop), most clicks first."""
    baseline = [window.previous(back) for back in range(1, rules.baseline_weeks + 1)]
    params = {
        "start": window.start,
        "end": window.end,
        "weeks": rules.baseline_weeks,
        "starts": [w.start for w in baseline],
        "ends": [w.end for w in baseline],
        "fast": fast_click_s,
    }
    agents = [_agent_week(*row) for row in conn.execute(AGENTS, params)]
    return [replace(a, flags=rules.flags(a, fast_click_s)) for a in agents]


def _agent_week(
    agent_id: str,
    clicks: int,
    tickets: int,
    previous: float,
    buttons: int,
    favourite: str | None,
    times: int,
    fast: int,
    adopted: int,
    closed_adoption_forms: int,
    closed_unsent: int,
) -> AgentWeek:
    return AgentWeek(
        agent_id=agent_id,
        clicks=clicks,
        tickets=tickets,
        previous_clicks=previous,
        same_button_share=times / buttons if buttons else None,
        fast_share=fast / clicks if clicks else None,
        flags=(),
        favourite=favourite,
        button_clicks=buttons,
        adopted=adopted,
        closed_adoption_forms=closed_adoption_forms,
        closed_unsent=closed_unsent,
    )


def _sent_adoption(
    conn: psycopg.Connection,
    sets: Sequence[DraftSetStamp],
    end: datetime,
    sent_adoption: SentAdoption | None,
) -> dict[str, int]:
    counts = dict.fromkeys(VALUES["adoption"], 0)
    if sent_adoption is not None:
        counts |= sent_adoption(conn, sets, end)
    return counts


def _share(counts: dict[str, int], hits: Sequence[str]) -> float | None:
    total = sum(counts.values())
    return sum(counts[h] for h in hits) / total if total else None
