"""The weekly digest's content: one week's figures against the four before, the last retrain,
the week's model changes and the knowledge gaps, as plain JSON-friendly data.

The same content becomes Slack blocks (``bot.digest_views``), Markdown and a PNG chart
(``flywheel.digest_render``); it is stored per week so what a manager opens later, and what an
admin turns into a Help Center draft, is exactly what was sent.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from flywheel import judge_watch
from flywheel.digest.gaps import GapCluster, gap_report
from flywheel.digest.metrics import (
    FatigueRules,
    RetrainSummary,
    SentAdoption,
    WeekMetrics,
    Window,
    last_retrain,
    weekly_trend,
)
from flywheel.digest.report import Digest, Figure, Gap
from flywheel.judge_review import agreement_summary
from flywheel.reports import decision_lines, memory_line
from flywheel.store import DuelDecision, ModelChange, duel_decisions, model_changes, runs
from rag.memory import REUSED_REPLY

Encode = Callable[[list[str]], np.ndarray]
TREND_WEEKS = 4
MAX_GAPS = 8
# the figures a manager reads first: key, label, unit, which way is good (None: neither)
HEADLINES: tuple[tuple[str, str, str, bool | None], ...] = (
    ("drafted_tickets", "Tickets drafted", "count", True),
    ("clicks", "Agent clicks", "count", True),
    ("adoption_rate", "Drafts used (clicks)", "rate", True),
    ("sent_adoption_rate", "Drafts used (replies sent)", "rate", True),
    ("win_rate", "Challenger win rate", "rate", True),
    ("relevance_precision", "Cited articles relevant", "rate", True),
    ("missing_rate", "Tickets missing knowledge", "rate", False),
    ("preference_coverage", "Tickets with a preference", "rate", True),
    ("median_first_click_s", "Median time to first click", "seconds", None),
)
SERIES = ("adoption_rate", "win_rate", "relevance_precision")


def build_digest(
    conn,
    window: Window,
    encode: Encode,
    *,
    fast_click_s: float = 3.0,
    fatigue: FatigueRules | None = None,
    now: datetime | None = None,
    sent_adoption: SentAdoption | None = None,
    duel: dict[str, Any] | None = None,
) -> Digest:
    """Read the week, the four before it, the last retrain, the model changes and the gaps;
    nothing is written. ``sent_adoption`` counts the replies sent in the helpdesk."""
    kwargs: dict[str, Any] = {"fast_click_s": fast_click_s, "sent_adoption": sent_adoption}
    if fatigue is not None:
        kwargs["fatigue"] = fatigue
    trend = weekly_trend(conn, window, TREND_WEEKS, **kwargs)
    week, earlier = trend[-1], trend[:-1]
    retrain = last_retrain(conn, window.end)
    clusters = gap_report(conn, encode, window.start, window.end, max_clusters=MAX_GAPS)
    changes = model_changes(conn, since=window.start, until=window.end)
    decided = duel_decisions(conn, since=window.start, until=window.end)
    return Digest(
        week_start=window.start.date().isoformat(),
        label=window.label,
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        figures=[_figure(spec, week, earlier) for spec in HEADLINES],
        weeks=[w.window.label for w in trend],
        series={key: [headline_value(w, key) for w in trend] for key in SERIES},
        draft_sets=week.draft_sets,
        adoption=dict(week.adoption),
        adoption_without_reason=week.adoption_without_reason,
        sent_adoption=dict(week.sent_adoption),
        preference=dict(week.preference),
        coverage=dict(week.coverage),
        agents=[_agent(a) for a in week.agents],
        retrain=_retrain(retrain) if retrain else None,
        gaps=[_gap(c) for c in clusters],
        model_changes=[_model_change(c) for c in reversed(changes)],
        duel=duel,
        duel_decisions=[_duel_decision(d) for d in reversed(decided)],
        judge_agreement=agreement_summary(conn, window.start, window.end),
        judge=judge_watch.latest(runs(conn, judge_watch.WATCHED_RUNS + 1, before=window.end)),
    )


def digest_of(settings, db, window: Window, *, sent_adoption: SentAdoption | None = None) -> Digest:
    """A week's digest as the product builds it: the live embeddings, the judge's read time."""
    with db.connection() as conn:
        return build_digest(
            conn,
            window,
            live_encode(settings, db),
            fast_click_s=settings.judge_min_read_s,
            sent_adoption=sent_adoption,
            duel=running_duel(settings, db, window.end),
        )


def running_duel(settings, db, end: datetime) -> dict[str, Any] | None:
    """The live pair's online A/B test on the clicks before ``end``."""
    from flywheel.online import OnlineDecision, summary

    duel = OnlineDecision.reading(settings, db).state(until=end)
    return summary(duel) if duel else None


def _duel_decision(decision: DuelDecision) -> dict[str, Any]:
    """The decision as the digest's values hold it; ``contender`` names what was tested in
    words a manager reads (a generator version, or the replies reused from similar tickets)."""
    row = dataclasses.asdict(decision)
    row["decided_at"] = decision.decided_at.isoformat()
    row["contender"] = (
        "replies from similar tickets"
        if decision.challenger == REUSED_REPLY
        else f"generator {decision.challenger}"
    )
    return row


def live_encode(settings, db) -> Encode:
    """The live retriever's embeddings, loaded on first use: gaps cluster as search sees them,
    and a week without gaps (or a new install without an index) loads no model."""
    from rag import factory

    def encode(texts: list[str]) -> np.ndarray:
        _, embedder = factory.embedding_versions(settings, db).live()
        return embedder.encode(texts)

    return encode


def headline_value(week: WeekMetrics, key: str) -> float | None:
    """A headline figure of one week's metrics."""
    if key == "sent_adoption_rate":
        sent = week.sent_adoption
        total = sum(sent.values())
        return (sent.get("as_is", 0) + sent.get("edited", 0)) / total if total else None
    if key == "preference_coverage":
        return week.coverage.get("preference") if week.draft_sets else None
    value = getattr(week, key)
    return None if value is None else float(value)


def _figure(spec: tuple[str, str, str, bool | None], week, earlier: Sequence) -> Figure:
    """Weeks before the copilot was in use (nothing drafted or clicked) are not a baseline:
    "▲ 24 vs 0" would only say it was installed."""
    key, label, unit, higher = spec
    used = [w for w in earlier if w.draft_sets or w.clicks]
    past = [v for v in (headline_value(w, key) for w in used) if v is not None]
    return Figure(
        key=key,
        label=label,
        unit=unit,
        value=headline_value(week, key),
        previous=statistics.fmean(past) if past else None,
        higher_is_better=higher,
    )


def _agent(agent) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "clicks": agent.clicks,
        "tickets": agent.tickets,
        "previous_clicks": round(agent.previous_clicks, 1),
        "flags": list(agent.flags),
        "closed_unsent": agent.closed_unsent,
    }


def _model_change(change: ModelChange) -> dict[str, Any]:
    return {**dataclasses.asdict(change), "at": change.at.isoformat(timespec="minutes")}


def _gap(cluster: GapCluster) -> Gap:
    return Gap(
        key=cluster.key,
        title=cluster.title,
        tickets=cluster.tickets,
        examples=list(cluster.examples),
        articles=[[label, url] for label, url in cluster.articles],
        body=cluster.article_body(),
    )


def _retrain(run: RetrainSummary) -> dict[str, Any]:
    """The last run in sentences: per model, promoted or kept, why, and the metric moved;
    then what the feedback memory did and whether the retrained models made it redundant."""
    lines = decision_lines(run.decisions)
    if memory_line(run.counts):
        lines.append(memory_line(run.counts))
    return {
        "run_id": run.run_id,
        "status": run.status,
        "trigger": run.trigger,
        "finished_at": run.finished_at.isoformat(timespec="minutes") if run.finished_at else None,
        "lines": lines,
        "error": run.error,
    }
