"""An always-valid sequential test for the online A/B duel: promote or retire a challenger.

On some tickets the Slack card's drafts A and B come from the champion generator and from a
challenger. Each "Prefer" click is one duel outcome for the challenger: 1 when the agent
preferred the challenger's draft, 0 when they preferred the champion's, 0.5 for a tie ("both
bad" is left out by the caller). Adoption (1 when the agent sent or edited the challenger's
draft, 0 for the champion's) is tested the same way. The win rate is the mean outcome.

**The test.** The mixture sequential probability ratio test (mSPRT: Robbins' normal mixture, as
in Johari, Koomen, Pekelis & Walsh, "Always valid inference", 2017) of H0: win rate = 0.5. With
σ² = 0.25, the mixing sd τ over the effect on the win rate, n duels and their mean x̄::

    Λ_n = sqrt(σ² / (σ² + nτ²)) · exp(n²τ²(x̄ − 0.5)² / (2σ²(σ² + nτ²)))

The test decides at the *first* n ≥ ``min_duels`` with Λ_n ≥ 1/α: "better" when x̄ > 0.5,
"worse" otherwise. A decision is final: the product acts on it when it happens, so duels
recorded after it are not counted and a test whose Λ later falls back below 1/α stays decided
(Ville's bound below is about that first crossing). With no crossing by
``max_duels`` the verdict is "no_difference": the challenger is retired, the champion stays.

**Why it is valid at every look.** For any effect θ − 0.5, the Gaussian likelihood ratio
exp(λS_n − nλ²σ²/2) (S_n = Σ(x_i − 0.5), λ = (θ − 0.5)/σ²) is a nonnegative supermartingale
with value 1 at n = 0 under H0, as long as every outcome, given the past, has mean 0.5 and is
sub-Gaussian with variance proxy σ². Λ_n is the average of these over θ ~ N(0.5, τ²), so it is
one too, and Ville's inequality gives P(Λ_n ≥ 1/α for some n) ≤ α: the chance that the test
*ever* decides when the generators are equal is at most α, however often Λ is looked at and
whenever the looks are. ``min_duels`` and ``max_duels`` only remove chances to decide, so they
can only lower that rate. The guarantee asks only that, given everything before it, each duel
has mean 0.5 when the generators are equal: a changing ticket mix does not break it (the
generators are equal on every ticket), but one duel per card (the latest click) should be
counted, and which of A and B is the challenger should be random.

**Why σ = 0.5 and ties as half are conservative.** Any outcome in [0, 1] is sub-Gaussian with
variance proxy 1/4 (Hoeffding's lemma), whatever its distribution, so the test needs no
estimate of the variance and no knowledge of the tie rate. A 0/1 outcome with mean 0.5 has
variance exactly 1/4; ties lower the real variance (to 0.25 · (1 − tie share) at mean 0.5), so
with ties the real error rate is below α and the intervals are wider than they need be.
Counting a tie as half keeps equal generators at a win rate of exactly 0.5 (a tie says
nothing for either), so it cannot move the test towards a decision under H0.

**The confidence sequence.** The θ with Λ_n(θ) < 1/α, i.e. x̄ ± sqrt(2σ²(σ² + nτ²)/(n²τ²) ·
log(sqrt((σ² + nτ²)/σ²)/α)), clipped to [0, 1]. It holds the true win rate at every n at once
with probability ≥ 1 − α (the same argument with 0.5 replaced by θ), and from ``min_duels``
on it leaves out 0.5 exactly when the test decides, so the interval and the verdict agree.

**What α means to an admin.** α = 0.05 (the default): if a challenger is no better than the
champion, there is at most a 5% chance that the test ever says it differs, and, since equal
generators make a preference for either side equally likely, at most a 2.5% chance that it is
promoted by mistake. That holds although the verdict is looked at after every duel, and it is
a ceiling: Ville's bound is loose and ``max_duels`` cuts the test short, so in simulation
(benchmarks/duels.py) equal generators led to any decision in under 1% of runs with 20% ties
and about 2% with none. It is not the chance that a promoted challenger is a mistake (that
depends on how many challengers are any good), and a real but small difference (say 52%
against 48%) will mostly end as "no difference" by ``max_duels``. τ = 0.1 tunes the test for
win rates around 40% or 60%: with them it decides within about 200 duels (the median), and
larger effects are found faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

SIGMA2 = 0.25  # variance proxy of any outcome in [0, 1] (σ = 0.5)
NULL_RATE = 0.5  # the win rate of a challenger equal to the champion

Verdict = Literal["running", "better", "worse", "no_difference"]


@dataclass(frozen=True)
class SequentialPolicy:
    alpha: float = 0.05  # chance, when the two generators are equal, that the test ever decides
    tau: float = 0.1  # sd of the normal mixture over the effect on the win rate
    min_duels: int = 30  # no decision before this many duels
    max_duels: int = 400  # no decision by then: "no difference detected"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if not (self.tau > 0.0 and math.isfinite(self.tau)):
            raise ValueError(f"tau must be a positive number, not {self.tau}")
        if not 1 <= self.min_duels <= self.max_duels:
            raise ValueError(
                f"need 1 ≤ min_duels ≤ max_duels, not {self.min_duels} and {self.max_duels}"
            )

    @property
    def threshold(self) -> float:
        """1/α: the value of Λ_n at which the test decides."""
        return 1.0 / self.alpha


@dataclass(frozen=True)
class SequentialState:
    """The test after the duels recorded so far, or at its decision once it has decided.

    ``duels``, ``win_rate``, the interval and ``statistic`` are those of the duels the verdict
    rests on: all of them while running, the first ``duels`` once decided (``ignored`` counts
    the duels recorded after the decision, which do not change it).
    """

    duels: int
    win_rate: float | None  # mean outcome (ties count half); None before any duel
    low: float | None  # always-valid confidence sequence for the win rate at level 1 - alpha
    high: float | None
    statistic: float  # the mSPRT likelihood ratio Λ_n (1 before any duel)
    threshold: float  # 1/alpha
    verdict: Verdict
    max_duels: int = 400  # the policy's, for describe()
    min_duels: int = 30  # the policy's, for describe()
    ignored: int = 0  # duels recorded after the decision, not counted

    @property
    def decided(self) -> bool:
        return self.verdict != "running"

    @property
    def level(self) -> float:
        """The interval's confidence level, 1 - alpha."""
        return 1.0 - 1.0 / self.threshold

    def describe(self, what: str = "challenger preferred", unit: str = "duel") -> str:
        """One line for a manager, e.g. "challenger preferred in 62% of 85 duels (95% interval
        51%–72%): better (Λ 27.1 ≥ 20)"; ``what`` and ``unit`` name the signal (an adoption
        reads "challenger's draft used in … of … adoptions")."""
        level = f"{self.level * 100:g}%"
        needs = f"Λ ≥ {_number(self.threshold)}"
        if self.win_rate is None or self.low is None or self.high is None:
            head = f"no {unit}s yet"
        else:
            head = (
                f"{what} in {self.win_rate:.0%} of {self.duels} "
                f"{unit if self.duels == 1 else unit + 's'} "
                f"({level} interval {self.low:.0%}–{self.high:.0%})"
            )
        stat = _number(self.statistic)
        if self.verdict == "running":
            wait = f"needs {needs} or {self.max_duels} {unit}s"
            if self.duels < self.min_duels:
                wait = f"needs {self.min_duels} {unit}s, then {needs}, or {self.max_duels} {unit}s"
            tail = f"running: {wait} (Λ {stat} now)" if self.duels else f"running: {wait}"
        elif self.verdict == "no_difference":
            tail = (
                f"no difference detected (Λ {stat} < {_number(self.threshold)}): the champion stays"
            )
        else:
            tail = f"{self.verdict} (Λ {stat} ≥ {_number(self.threshold)})"
        if self.ignored:
            later = unit if self.ignored == 1 else unit + "s"
            tail += f"; {self.ignored} later {later} not counted"
        return f"{head}: {tail}"


@dataclass(frozen=True)
class Decisions:
    """Many runs of the test at once (one row of outcomes each), as arrays by run."""

    verdicts: np.ndarray  # str: "running", "better", "worse" or "no_difference"
    duels: np.ndarray  # int: the duels each verdict rests on (the first crossing, max_duels, …)
    win_rate: np.ndarray  # float, at those duels (nan for a run without duels)
    low: np.ndarray
    high: np.ndarray
    statistic: np.ndarray  # Λ at those duels


def log_statistic(
    n: np.ndarray, mean: np.ndarray, tau: float, rate: float = NULL_RATE
) -> np.ndarray:
    """log Λ_n of the mixture SPRT of H0: win rate = ``rate`` (elementwise)."""
    n = np.asarray(n, dtype=float)
    spread = SIGMA2 + n * tau**2
    deviation = np.asarray(mean, dtype=float) - rate
    return 0.5 * np.log(SIGMA2 / spread) + (n * tau * deviation) ** 2 / (2 * SIGMA2 * spread)


def half_width(n: np.ndarray, tau: float, alpha: float) -> np.ndarray:
    """Half the width of the confidence sequence after n ≥ 1 duels (before clipping)."""
    n = np.asarray(n, dtype=float)
    spread = SIGMA2 + n * tau**2
    radius = 2 * SIGMA2 * spread / (n * tau) ** 2 * (0.5 * np.log(spread / SIGMA2) - np.log(alpha))
    return np.sqrt(radius)


def decide_many(outcomes: np.ndarray, policy: SequentialPolicy) -> Decisions:
    """Runs the test on each row of ``outcomes`` (runs × duels, in the order they came).

    Each row is monitored after every duel and stops at its first crossing at or after
    ``min_duels``; with none by ``max_duels`` it ends "no_difference"; otherwise it is still
    "running" after all its duels. Vectorised: the simulations use it, and so does
    ``test_duels`` (one row).
    """
    values = np.asarray(outcomes, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"outcomes must be a runs × duels matrix, not shape {values.shape}")
    _check(values)
    runs, total = values.shape
    if total == 0:
        nan = np.full(runs, np.nan)
        return Decisions(
            np.full(runs, "running"),
            np.zeros(runs, dtype=int),
            nan,
            nan.copy(),
            nan.copy(),
            np.ones(runs),
        )
    seen = min(total, policy.max_duels)  # duels after max_duels never count
    values = values[:, :seen]
    n = np.arange(1, seen + 1)
    mean = np.cumsum(values, axis=1) / n
    log_lam = log_statistic(n, mean, policy.tau)
    crossed = (log_lam >= -math.log(policy.alpha)) & (n >= policy.min_duels)
    any_crossed = crossed.any(axis=1)
    at = np.where(any_crossed, crossed.argmax(axis=1), seen - 1)
    rows = np.arange(runs)
    win_rate = mean[rows, at]
    width = half_width(at + 1, policy.tau, policy.alpha)
    verdicts = np.where(
        any_crossed,
        np.where(win_rate > NULL_RATE, "better", "worse"),
        "no_difference" if seen >= policy.max_duels else "running",
    )
    return Decisions(
        verdicts=verdicts,
        duels=at + 1,
        win_rate=win_rate,
        low=np.clip(win_rate - width, 0.0, 1.0),
        high=np.clip(win_rate + width, 0.0, 1.0),
        statistic=np.exp(np.minimum(log_lam[rows, at], 700.0)),
    )


def test_duels(outcomes: Sequence[float], policy: SequentialPolicy) -> SequentialState:
    """The test on one challenger's duel outcomes, in the order they were recorded.

    Scans the whole sequence: the verdict is the one of the first n ≥ ``min_duels`` with
    Λ_n ≥ 1/α, even when Λ fell back later.
    """
    values = np.asarray(list(outcomes), dtype=float)
    if values.ndim != 1:
        raise ValueError("outcomes must be a flat sequence of numbers in [0, 1]")
    found = decide_many(values[np.newaxis, :], policy)
    duels = int(found.duels[0])
    common = {
        "threshold": policy.threshold,
        "verdict": str(found.verdicts[0]),
        "max_duels": policy.max_duels,
        "min_duels": policy.min_duels,
        "ignored": len(values) - duels,
    }
    if duels == 0:
        return SequentialState(0, None, None, None, statistic=1.0, **common)
    return SequentialState(
        duels=duels,
        win_rate=float(found.win_rate[0]),
        low=float(found.low[0]),
        high=float(found.high[0]),
        statistic=float(found.statistic[0]),
        **common,
    )


test_duels.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def trajectory(outcomes: Sequence[float], policy: SequentialPolicy) -> list[SequentialState]:
    """The state after each duel (1…len), as a dashboard would have shown it at that time:
    ``test_duels`` of every prefix, "running" up to the first crossing (or ``max_duels``),
    then that decision, unchanged, with more duels ``ignored``."""
    values = np.asarray(list(outcomes), dtype=float)
    final = test_duels(values, policy)
    if not len(values):
        return []
    n = np.arange(1, final.duels + 1)
    mean = np.cumsum(values[: final.duels]) / n
    statistic = np.exp(np.minimum(log_statistic(n, mean, policy.tau), 700.0))
    width = half_width(n, policy.tau, policy.alpha)
    running = [
        SequentialState(
            duels=int(k),
            win_rate=float(m),
            low=float(max(m - w, 0.0)),
            high=float(min(m + w, 1.0)),
            statistic=float(stat),
            threshold=policy.threshold,
            verdict="running",
            max_duels=policy.max_duels,
            min_duels=policy.min_duels,
        )
        for k, m, stat, w in zip(n, mean, statistic, width, strict=True)
    ]
    if not final.decided:
        return running
    decided = [replace(final, ignored=k) for k in range(len(values) - final.duels + 1)]
    return running[:-1] + decided


def _check(values: np.ndarray) -> None:
    if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        raise ValueError("duel outcomes must be numbers in [0, 1] (1 win, 0.5 tie, 0 loss)")


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞"
    if value >= 1000:
        return f"{value:,.0f}"
    if abs(value - round(value)) < 1e-9:
        return f"{round(value)}"
    return f"{value:.1f}"
