"""The weekly digest's content: one week's figures against the four before, the last retrain,
the week's model changes and the knowledge gaps, as plain JSON-friendly data.

The same content becomes Slack blocks (``bot.digest_views``), Markdown and a PNG chart
(``flywheel.digest_render``); it is stored per week so what a manager opens later, and what an
admin turns into a Help Center draft, is exactly what was sent.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from flywheel.digest.gaps import GapCluster, gap_report
from flywheel.digest.metrics import (
    FatigueRules,
    RetrainSummary,
    WeekMetrics,
    Window,
    last_retrain,
    weekly_trend,
)
from flywheel.reports import change_words, decision_lines
from flywheel.store import ModelChange, model_changes

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


@dataclass(frozen=True)
class Figure:
    """One headline number of the week, beside its mean over the previous four weeks."""

    key: str
    label: str
    unit: str  # 'count', 'rate' (0..1) or 'seconds'
    value: float | None
    previous: float | None
    higher_is_better: bool | None = True

    def shown(self, value: float | None = None) -> str:
        value = self.value if value is None else value
        if value is None:
            return "n/a"
        if self.unit == "rate":
            return f"{value:.0%}"
        if self.unit == "seconds":
            return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"
        return f"{value:,.0f}"

    def change(self) -> str:
        """'▲ 12 pts vs 4-week avg 55%', or why there is no comparison."""
        if self.value is None:
            return "no data this week"
        if self.previous is None:
            return "no earlier weeks to compare"
        delta = self.value - self.previous
        if self.unit == "rate":
            amount = f"{abs(delta) * 100:.0f} pts"
        elif self.unit == "seconds":
            amount = f"{abs(delta):.0f} s"
        else:
            amount = f"{abs(delta):,.0f}"
        arrow = "▲" if delta > 0 else "▼" if delta < 0 else "="
        if arrow == "=" or amount.startswith("0 "):
            return f"= 4-week avg {self.shown(self.previous)}"
        return f"{arrow} {amount} vs 4-week avg {self.shown(self.previous)}"

    @property
    def verdict(self) -> str:
        """'better', 'worse' or '' (no comparison or no preferred direction)."""
        if self.value is None or self.previous is None or self.higher_is_better is None:
            return ""
        if abs(self.value - self.previous) < 1e-9:
            return ""
        better = (self.value > self.previous) == self.higher_is_better
        return "better" if better else "worse"


@dataclass(frozen=True)
class Gap:
    """A knowledge-gap cluster as the digest shows it."""

    key: str
    title: str
    tickets: int
    examples: list[str]
    articles: list[list[str | None]]  # [label, url]
    body: str  # the Help Center draft's HTML

    @classmethod
    def of(cls, cluster: GapCluster) -> Gap:
        return cls(
            key=cluster.key,
            title=cluster.title,
            tickets=cluster.tickets,
            examples=list(cluster.examples),
            articles=[[label, url] for label, url in cluster.articles],
            body=cluster.article_body(),
        )


@dataclass(frozen=True)
class Digest:
    week_start: str  # ISO date of the Monday
    label: str  # "16–22 Nov 2026"
    generated_at: str
    figures: list[Figure]
    weeks: list[str]  # labels of the trend's weeks, oldest first
    series: dict[str, list[float | None]]
    draft_sets: int
    adoption: dict[str, int]
    sent_adoption: dict[str, int]
    preference: dict[str, int]
    coverage: dict[str, float]
    agents: list[dict[str, Any]]
    retrain: dict[str, Any] | None
    gaps: list[Gap] = field(default_factory=list)
    # promotions and rollbacks in the week, oldest first (digests stored before: none)
    model_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing was drafted or clicked this week."""
        return self.draft_sets == 0 and self.figure("clicks").value == 0

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    @property
    def flagged_agents(self) -> list[dict[str, Any]]:
        return [a for a in self.agents if a["flags"]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Digest:
        data = dict(data)
        data["figures"] = [Figure(**f) for f in data["figures"]]
        data["gaps"] = [Gap(**g) for g in data.get("gaps", [])]
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)


def build_digest(
    conn,
    window: Window,
    encode: Encode,
    *,
    fast_click_s: float = 3.0,
    fatigue: FatigueRules | None = None,
    now: datetime | None = None,
) -> Digest:
    """Read the week, the four before it, the last retrain, the model changes and the gaps;
    nothing is written."""
    kwargs: dict[str, Any] = {"fast_click_s": fast_click_s}
    if fatigue is not None:
        kwargs["fatigue"] = fatigue
    trend = weekly_trend(conn, window, TREND_WEEKS, **kwargs)
    week, earlier = trend[-1], trend[:-1]
    retrain = last_retrain(conn, window.end)
    clusters = gap_report(conn, encode, window.start, window.end, max_clusters=MAX_GAPS)
    changes = model_changes(conn, since=window.start, until=window.end)
    return Digest(
        week_start=window.start.date().isoformat(),
        label=window.label,
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        figures=[_figure(spec, week, earlier) for spec in HEADLINES],
        weeks=[w.window.label for w in trend],
        series={key: [headline_value(w, key) for w in trend] for key in SERIES},
        draft_sets=week.draft_sets,
        adoption=dict(week.adoption),
        sent_adoption=dict(week.sent_adoption),
        preference=dict(week.preference),
        coverage=dict(week.coverage),
        agents=[_agent(a) for a in week.agents],
        retrain=_retrain(retrain) if retrain else None,
        gaps=[Gap.of(c) for c in clusters],
        model_changes=[_model_change(c) for c in reversed(changes)],
    )


def digest_of(settings, db, window: Window) -> Digest:
    """A week's digest as the product builds it: the live embeddings, the judge's read time."""
    with db.connection() as conn:
        return build_digest(
            conn, window, live_encode(settings, db), fast_click_s=settings.judge_min_read_s
        )


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
    }


def _model_change(change: ModelChange) -> dict[str, Any]:
    return {**dataclasses.asdict(change), "at": change.at.isoformat(timespec="minutes")}


def model_change_line(change: dict[str, Any], *, why: bool = True) -> str:
    """'retriever r7 promoted, replacing r6 (Wed 02 Dec 10:02 UTC): promoted by …', whether a
    cycle, an admin in App Home or the CLI made it."""
    what = change_words(change["change"], change["other"])
    at = datetime.fromisoformat(change["at"])
    line = f"{change['kind']} {change['version']} {what} ({at:%a %d %b %H:%M} UTC)"
    return line + (f": {change['reason']}" if why and change.get("reason") else "")


def _retrain(run: RetrainSummary) -> dict[str, Any]:
    """The last run in sentences: per model, promoted or kept, why, and the metric moved."""
    lines = decision_lines(run.decisions)
    return {
        "run_id": run.run_id,
        "status": run.status,
        "trigger": run.trigger,
        "finished_at": run.finished_at.isoformat(timespec="minutes") if run.finished_at else None,
        "lines": lines,
        "error": run.error,
    }
