"""What agents saw before and after each of the demo's cycles, with intervals.

Each figure is a share of cards (or of marks) on the tickets that came in the weeks before a
cycle and in the weeks after it, with its 95% Wilson interval; the change between the two is
given with Newcombe's interval for a difference of proportions (method 10, built from the two
Wilson intervals), and "no change detected" when that interval holds zero. The intervals treat
cards as independent draws, which the streamed tickets are; relevance marks of one card are
not, so that figure's interval is somewhat too narrow, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import binomtest

LEVEL = 0.95


@dataclass(frozen=True)
class Share:
    hits: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.total if self.total else None

    def interval(self) -> tuple[float, float] | None:
        if not self.total:
            return None
        ci = binomtest(self.hits, self.total).proportion_ci(LEVEL, method="wilson")
        return float(ci.low), float(ci.high)

    def shown(self) -> str:
        ci = self.interval()
        if ci is None or self.rate is None:
            return "n/a"
        return f"{self.rate:.0%} [{ci[0]:.0%}, {ci[1]:.0%}] of {self.total}"


def count(flags: Iterable[bool]) -> Share:
    values = list(flags)
    return Share(sum(values), len(values))


@dataclass(frozen=True)
class Change:
    """After minus before, with Newcombe's interval."""

    before: Share
    after: Share

    def interval(self) -> tuple[float, float] | None:
        a, b = self.before.interval(), self.after.interval()
        if a is None or b is None or self.before.rate is None or self.after.rate is None:
            return None
        p1, p2 = self.after.rate, self.before.rate
        (l1, u1), (l2, u2) = b, a
        d = p1 - p2
        low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        return low, high

    def shown(self) -> str:
        ci = self.interval()
        if ci is None or self.before.rate is None or self.after.rate is None:
            return "n/a"
        d = self.after.rate - self.before.rate
        figure = f"{d * 100:+.0f} pts [{ci[0] * 100:+.0f}, {ci[1] * 100:+.0f}]"
        if ci[0] <= 0 <= ci[1]:
            return f"no change detected ({figure})"
        return ("better" if d > 0 else "worse") + f" ({figure})"


@dataclass(frozen=True)
class Card:
    """One answered card of the demo, as the report counts it."""

    draft_set_id: int
    week: int
    has_answer: bool  # the knowledge base holds an article for it
    answer_shown: bool  # one of that article's chunks was among the card's sources
    used: bool  # a draft was used (as is or edited)
    missing: bool  # the agent named missing knowledge
    relevant_marks: int
    marks: int


FIGURES = (
    ("right article among the sources", "of tickets the knowledge base answers", True),
    ("a draft used", "of cards", True),
    ("sources marked relevant", "of marks (marks of a card are not independent)", True),
    ("missing knowledge named", "of cards", False),
)


def shares(cards: Sequence[Card]) -> dict[str, Share]:
    answerable = [c for c in cards if c.has_answer]
    return {
        FIGURES[0][0]: count(c.answer_shown for c in answerable),
        FIGURES[1][0]: count(c.used for c in cards),
        FIGURES[2][0]: Share(sum(c.relevant_marks for c in cards), sum(c.marks for c in cards)),
        FIGURES[3][0]: count(c.missing for c in cards),
    }


def compare(before: Sequence[Card], after: Sequence[Card]) -> list[tuple[str, str, str, str]]:
    """Rows of (figure, before, after, change) for a cycle's table."""
    a, b = shares(before), shares(after)
    rows = []
    for name, unit, higher_is_better in FIGURES:
        change = Change(a[name], b[name])
        verdict = change.shown()
        if not higher_is_better and verdict.startswith(("better", "worse")):
            flipped = "worse" if verdict.startswith("better") else "better"
            verdict = f"{flipped} {verdict.split(' ', 1)[1]}"
        rows.append((f"{name} ({unit})", a[name].shown(), b[name].shown(), verdict))
    return rows
