"""The judge watched from cycle to cycle: what share of each kind of click every rule dropped,
against that rule's own history, so that a rule gone wrong on a new knowledge base (dropping
the right marks with the wrong ones) is seen, said, and, per settings, left out of the cycle.

A rule's share is measured on its own (every rule runs on every event), so a rule left out of
a cycle still has this cycle's figure in the history: the watch keeps seeing what it would do.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.events import StoredFeedback
from flywheel.judge import Verdict
from flywheel.reports import evidence_line, judge_summary

KIND_NAMES = {
    "relevance": "relevance marks",
    "missing_knowledge": "missing-knowledge picks",
    "preference": "preferences",
    "adoption": "adoption clicks",
}
SURGE_MARGIN = 0.10  # a surge is also this many points above the rule's median share
HISTORY_NEEDED = 3  # cycles of history before a share can be called a surge
MIN_EVENTS = 20  # clicks of a kind before a rule's share of them can be unusual at all
WATCHED_RUNS = 8  # the cycles a rule's share is compared with


@dataclass(frozen=True)
class RuleShare:
    """One rule on one kind of click in one cycle."""

    rule: str
    kind: str
    dropped: int
    events: int

    @property
    def share(self) -> float:
        return self.dropped / self.events if self.events else 0.0


@dataclass(frozen=True)
class Unusual:
    rule: str
    kind: str
    share: float
    why: str


@dataclass
class JudgeWatch:
    """A cycle's judge figures as stored in the run's counts under ``judge_rules``."""

    kinds: dict[str, int]  # events judged per kind
    dropped: dict[str, dict[str, int]]  # rule → kind → events the rule doubted
    unusual: list[Unusual] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rules the cycle ran without
    # the rules that could judge (enabled, calibrated); None: every rule (older records)
    ran: list[str] | None = None

    def judged_by(self, rule: str) -> bool:
        return self.ran is None or rule in self.ran

    def shares(self) -> list[RuleShare]:
        return [
            RuleShare(rule, kind, n, self.kinds.get(kind, 0))
            for rule, by_kind in self.dropped.items()
            for kind, n in by_kind.items()
        ]

    def as_counts(self) -> dict[str, Any]:
        return {
            "kinds": self.kinds,
            "dropped": self.dropped,
            "unusual": [vars(u) for u in self.unusual],
            "skipped": self.skipped,
            "ran": self.ran,
        }

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any]) -> JudgeWatch | None:
        found = counts.get("judge_rules")
        if not isinstance(found, Mapping):
            return None
        return cls(
            kinds=dict(found.get("kinds", {})),
            dropped={rule: dict(kinds) for rule, kinds in found.get("dropped", {}).items()},
            unusual=[Unusual(**u) for u in found.get("unusual", [])],
            skipped=list(found.get("skipped", [])),
            ran=found.get("ran"),
        )


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def measure(
    events: Sequence[StoredFeedback], verdicts: Sequence[Verdict], ran: Sequence[str] | None = None
) -> JudgeWatch:
    """Per rule and kind, the events it doubted; every rule that doubted an event counts it.
    ``ran``: the rules that could judge (``Judge.ran``)."""
    kinds = Counter(e.kind for e in events)
    kind_of = {e.id: e.kind for e in events}
    dropped: dict[str, Counter[str]] = {}
    for v in verdicts:
        for rule in v.rules:
            dropped.setdefault(rule, Counter())[kind_of[v.event_id]] += 1
    return JudgeWatch(
        kinds=dict(sorted(kinds.items())),
        dropped={rule: dict(sorted(c.items())) for rule, c in sorted(dropped.items())},
        ran=None if ran is None else list(ran),
    )


def history_of(watches: Sequence[JudgeWatch], rule: str, kind: str) -> list[float]:
    """The rule's share of ``kind`` in earlier cycles, oldest first; a cycle that judged that
    kind with the rule, where it doubted nothing, counts as 0; one where the rule did not run
    (disabled, or not calibrated yet) is left out."""
    return [
        RuleShare(rule, kind, w.dropped.get(rule, {}).get(kind, 0), w.kinds[kind]).share
        for w in watches
        if w.kinds.get(kind) and w.judged_by(rule)
    ]


def find_unusual(
    current: JudgeWatch, earlier: Sequence[JudgeWatch], *, ceiling: float, surge: float
) -> list[Unusual]:
    """Shares above ``ceiling``, or ``surge`` times the rule's median share of the earlier
    cycles (with at least HISTORY_NEEDED of them) and SURGE_MARGIN above it; of a kind with
    at least MIN_EVENTS clicks."""
    found = []
    for share in current.shares():
        if share.events < MIN_EVENTS:  # 2 of 3 clicks is no pattern
            continue
        value = share.share
        what = f"{share.rule} dropped {value:.0%} of {share.events:,} {kind_name(share.kind)}"
        if value > ceiling:
            found.append(
                Unusual(
                    share.rule, share.kind, value, f"{what}, above the ceiling of {ceiling:.0%}"
                )
            )
            continue
        past = history_of(earlier, share.rule, share.kind)
        if len(past) < HISTORY_NEEDED:
            continue
        median = statistics.median(past)
        if value > surge * median and value >= median + SURGE_MARGIN:
            found.append(
                Unusual(
                    share.rule,
                    share.kind,
                    value,
                    f"{what}, against a median of {median:.0%} over its last {len(past)} cycles",
                )
            )
    return found


def warning(unusual: Sequence[Unusual], skipped: Sequence[str]) -> str:
    """What the admins are told: each unusual rule, and whether this cycle ran without it."""
    lines = [f"• {u.why}" for u in unusual]
    if skipped:
        ran = f"This cycle judged the clicks without {', '.join(sorted(skipped))}"
        lines.append(f"{ran} (AITL_JUDGE_UNUSUAL_RULE=skip); check the knowledge base or the rule.")
    else:
        lines.append("The cycle still used it (AITL_JUDGE_UNUSUAL_RULE=warn).")
    return "The judge dropped an unusual share of clicks:\n" + "\n".join(lines)


def lines(current: JudgeWatch, earlier: Sequence[JudgeWatch], limit: int = 6) -> list[str]:
    """The rules that dropped most, with the same rule's share in the cycles before (newest
    last), e.g. "unused_for_lack, relevance marks: 12% (before: 10%, 11%, 13%)"."""
    flagged = {(u.rule, u.kind) for u in current.unusual}
    ranked = sorted(current.shares(), key=lambda s: (-s.share, s.rule, s.kind))
    found = []
    for share in ranked[:limit]:
        past = history_of(earlier, share.rule, share.kind)
        before = f" (before: {', '.join(f'{p:.0%}' for p in past)})" if past else ""
        mark = " ⚠ unusual" if (share.rule, share.kind) in flagged else ""
        if share.rule in current.skipped:
            mark += ", skipped this cycle"
        found.append(
            f"{share.rule}, {kind_name(share.kind)}: {share.share:.0%}"
            f" of {share.events:,}{before}{mark}"
        )
    return found


def latest(runs: Sequence[Any]) -> dict[str, Any] | None:
    """The newest run that judged clicks, against the ones before it (``runs`` newest first,
    as ``store.runs`` lists them), as plain data for App Home and the digest: the share
    dropped, the gate's evidence, each rule with its history, and what was unusual."""
    judged = [r for r in runs if "judge_rules" in r.counts]
    if not judged:
        return None
    run, earlier = judged[0], judged[1 : WATCHED_RUNS + 1]
    current = JudgeWatch.from_counts(run.counts)
    history = [w for w in (JudgeWatch.from_counts(r.counts) for r in reversed(earlier)) if w]
    evidence = run.counts.get("gate_evidence")
    return {
        "run_id": run.id,
        "started_at": run.started_at.isoformat(timespec="minutes"),
        "summary": judge_summary(run.counts),
        "evidence": evidence_line(evidence) if evidence else None,
        "rules": lines(current, history) if current else [],
        "unusual": [u.why for u in current.unusual] if current else [],
        "skipped": current.skipped if current else [],
    }
