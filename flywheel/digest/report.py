"""The weekly digest as a value, and how a model change reads.

This module is data only (it imports nothing else of the flywheel), so the bot may render a
digest it received through its port (``bot.ports.DigestContent``) without reaching into how
the flywheel builds it. The same content becomes Slack blocks (``bot.digest.views``),
Markdown and a PNG chart (``flywheel.digest.render``); it is stored per week, so what a
manager opens later, and what an admin turns into a Help Center draft, is what was sent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
    # standing adoptions whose reasons' form was closed unsent (digests stored before: 0)
    adoption_without_reason: int = 0
    # the generators' online A/B test at the week's end (None: no challenger drafted)
    duel: dict[str, Any] | None = None
    # what the online test decided in the week, oldest first
    duel_decisions: list[dict[str, Any]] = field(default_factory=list)
    # the judge of the last cycle against the cycles before (flywheel.judge_watch.latest)
    judge: dict[str, Any] | None = None
    # the judge against its reviewers: {"period": the week's reviews, "all_time": every review
    # before the week's end}, each {"n", "agreed", "kappa"} (digests stored before: None)
    judge_agreement: dict[str, Any] | None = None

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


def change_words(change: str, other: str | None, name: Callable[[str], str] = str) -> str:
    """'promoted, replacing r6' or 'rolled back, r6 live again' (``other`` None: the shipped
    model); ``name`` dresses a version for where it is shown."""
    before = name(other) if other else "the shipped model"
    return (
        f"promoted, replacing {before}"
        if change == "promoted"
        else f"rolled back, {before} live again"
    )


def model_change_line(change: dict[str, Any], *, why: bool = True) -> str:
    """'retriever r7 promoted, replacing r6 (Wed 02 Dec 10:02 UTC): promoted by …', whether a
    cycle, an admin in App Home or the CLI made it."""
    what = change_words(change["change"], change["other"])
    at = datetime.fromisoformat(change["at"])
    line = f"{change['kind']} {change['version']} {what} ({at:%a %d %b %H:%M} UTC)"
    return line + (f": {change['reason']}" if why and change.get("reason") else "")


def duel_line(duel: dict[str, Any]) -> str:
    """'Live A/B: challenger r7 vs champion extractive: preferred in 41% of 52 duels
    (interval 27%–55%); running' — the running duel in one line."""
    head = f"challenger {duel['challenger']} vs champion {duel['champion']}"
    if duel.get("win_rate") is None:
        figures = "no duels answered yet"
    else:
        figures = f"preferred in {duel['win_rate']:.0%} of {duel['duels']} duels"
        if duel.get("low") is not None:
            figures += f" (interval {duel['low']:.0%}–{duel['high']:.0%})"
    if duel.get("adoption_rate") is not None:
        figures += f", its draft used in {duel['adoption_rate']:.0%} of {duel['adoptions']}"
    state = duel.get("decided") or {
        "running": "test running",
        "better": "better: promotion due",
        "worse": "worse: retirement due",
        "no_difference": "no difference detected",
    }.get(duel.get("verdict", ""), "")
    return f"{head}: {figures}; {state}"


def duel_decision_line(decision: dict[str, Any]) -> str:
    """'generator r7 retired by the online A/B test (Wed 02 Dec 10:02 UTC): …'."""
    at = datetime.fromisoformat(decision["decided_at"])
    contender = decision.get("contender") or f"generator {decision['challenger']}"
    return (
        f"{contender} {decision['action']} by the online A/B test"
        f" against {decision['champion']} ({at:%a %d %b %H:%M} UTC): {decision['reason']}"
    )


def judge_agreement_line(agreement: dict[str, Any] | None, period: str | None = None) -> str:
    """'Judge vs reviewers: κ 0.62 (n = 24; agreed on 20), all time κ 0.58 (n = 61)': Cohen's
    kappa of the judge's keep / drop against reviewers' in the period and over every review;
    'n/a' with the share agreed when every label was the same (kappa is then 0 / 0).
    ``period`` names the first span where it is not the digest's week ('in the last 7 days')."""
    head = "Judge vs reviewers:"
    if not agreement or not agreement.get("all_time", {}).get("n"):
        return f"{head} no reviews yet" + (
            "" if period else " (admins and managers review in App Home)"
        )
    now, ever = agreement.get("period") or {}, agreement["all_time"]
    where = f" {period}" if period else ""
    if not now.get("n"):
        first = f"no reviews{where or ' this week'}"
    else:
        first = f"{_kappa(now)} (n = {now['n']:,}; agreed on {now['agreed']:,}"
        first += f"{_share(now)}){where}"
    every = f"all time {_kappa(ever)} (n = {ever['n']:,}{_share(ever)})"
    return f"{head} {first}, {every}"


def _kappa(figures: dict[str, Any]) -> str:
    kappa = figures.get("kappa")
    return "κ n/a" if kappa is None else f"κ {kappa:.2f}"


def _share(figures: dict[str, Any]) -> str:
    """The share agreed, where kappa cannot say it: every label was the same."""
    if figures.get("kappa") is not None or not figures.get("n"):
        return ""
    return f", {figures['agreed'] / figures['n']:.0%} agreed: one label throughout"


def judge_lines(judge: dict[str, Any]) -> list[str]:
    """The last cycle's judge in a few lines: what it dropped, the gate's evidence, what was
    unusual (and whether the cycle ran without it), and each rule against its cycles before."""
    found = [f"Run {judge['run_id']}: dropped {judge['summary'] or 'nothing'}."]
    if judge.get("evidence"):
        found.append(f"Held-out tickets (marks) before → after judging: {judge['evidence']}.")
    found += [f"⚠ {why}" for why in judge.get("unusual", [])]
    if judge.get("skipped"):
        found.append(f"The cycle judged without {', '.join(judge['skipped'])}.")
    found += judge.get("rules", [])
    return found
