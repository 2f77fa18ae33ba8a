"""The always-valid duel test (flywheel.sequential): error rates and power by seeded simulation,
the monitoring rule (min_duels, first crossing final, max_duels) and the manager's line.

The module is imported as a whole: ``test_duels`` imported by name would be collected by pytest.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flywheel import sequential

POLICY = sequential.SequentialPolicy()  # alpha 0.05, tau 0.1, 30 to 400 duels
TIES = 0.2
OUTCOMES = np.array([0.0, 0.5, 1.0])


def duels(seed: int, runs: int, win_rate: float, n: int = POLICY.max_duels) -> np.ndarray:
    """runs × n duel outcomes with the given mean: 20% ties, the rest split to match it."""
    wins = win_rate - TIES / 2
    rng = np.random.default_rng(seed)
    return rng.choice(OUTCOMES, size=(runs, n), p=[1 - TIES - wins, TIES, wins])


def three_sigma(p: float, runs: int) -> float:
    """The simulation margin: three binomial standard errors of a rate p over ``runs`` runs."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def shares(found: sequential.Decisions) -> dict[str, float]:
    return {v: float(np.mean(found.verdicts == v)) for v in sequential.Verdict.__args__}


def reference(outcomes: list[float], policy: sequential.SequentialPolicy) -> tuple[str, int]:
    """The rule written as a plain loop over the duels, from the formula: (verdict, duels)."""
    s2, tau, total = 0.25, policy.tau, 0.0
    for n, x in enumerate(outcomes[: policy.max_duels], start=1):
        total += x
        mean = total / n
        lam = math.sqrt(s2 / (s2 + n * tau**2)) * math.exp(
            n**2 * tau**2 * (mean - 0.5) ** 2 / (2 * s2 * (s2 + n * tau**2))
        )
        if n >= policy.min_duels and lam >= 1 / policy.alpha:
            return ("better" if mean > 0.5 else "worse"), n
    if len(outcomes) >= policy.max_duels:
        return "no_difference", policy.max_duels
    return "running", len(outcomes)


# --- error rates and power -----------------------------------------------------------------


def test_equal_generators_rarely_decide_and_rarely_promote():
    runs = 4000
    found = sequential.decide_many(duels(seed=1, runs=runs, win_rate=0.5), POLICY)
    rate = shares(found)
    decided = rate["better"] + rate["worse"]
    assert rate["running"] == 0.0  # every run reached max_duels or decided
    assert decided <= POLICY.alpha, rate
    # equal generators: a preference either way is as likely, so false promotion ≤ alpha/2
    assert rate["better"] <= POLICY.alpha / 2 + three_sigma(POLICY.alpha / 2, runs), rate
    assert rate["worse"] <= POLICY.alpha / 2 + three_sigma(POLICY.alpha / 2, runs), rate


def test_equal_generators_without_ties_stay_within_alpha():
    """0/1 outcomes only: the variance is the full 1/4 the test assumes, the least slack."""
    runs = 4000
    rng = np.random.default_rng(2)
    outcomes = rng.integers(0, 2, size=(runs, POLICY.max_duels)).astype(float)
    rate = shares(sequential.decide_many(outcomes, POLICY))
    assert rate["better"] + rate["worse"] <= POLICY.alpha, rate
    assert rate["better"] <= POLICY.alpha / 2 + three_sigma(POLICY.alpha / 2, runs), rate


def test_a_known_winner_is_promoted():
    found = sequential.decide_many(duels(seed=3, runs=1000, win_rate=0.65), POLICY)
    rate = shares(found)
    assert rate["better"] >= 0.8, rate
    assert rate["worse"] <= POLICY.alpha, rate
    assert np.all(found.win_rate[found.verdicts == "better"] > 0.5)


def test_a_known_loser_is_retired():
    found = sequential.decide_many(duels(seed=4, runs=1000, win_rate=0.35), POLICY)
    rate = shares(found)
    assert rate["worse"] >= 0.8, rate
    assert rate["better"] <= POLICY.alpha, rate


def test_the_interval_holds_the_true_rate_at_every_look():
    """Time-uniform coverage: the confidence sequence holds the true rate after every duel
    at once in ≥ 1 - alpha of runs, so also at the end of each run and at its decision."""
    runs = 2000
    n = np.arange(1, POLICY.max_duels + 1)
    width = sequential.half_width(n, POLICY.tau, POLICY.alpha)
    for seed, true_rate in enumerate((0.5, 0.65, 0.35, 0.8)):
        outcomes = duels(seed=10 + seed, runs=runs, win_rate=true_rate)
        mean = np.cumsum(outcomes, axis=1) / n
        low, high = np.clip(mean - width, 0, 1), np.clip(mean + width, 0, 1)
        covered = (low <= true_rate) & (true_rate <= high)
        assert covered[:, -1].mean() >= 1 - POLICY.alpha, true_rate  # at the end of each run
        assert covered.all(axis=1).mean() >= 1 - POLICY.alpha, true_rate  # at every n at once
        found = sequential.decide_many(outcomes, POLICY)
        at_decision = (found.low <= true_rate) & (true_rate <= found.high)
        assert at_decision.mean() >= 1 - POLICY.alpha, true_rate


def test_the_interval_leaves_out_half_exactly_when_lambda_crosses():
    n = np.arange(1, POLICY.max_duels + 1)
    mean = np.cumsum(duels(seed=20, runs=300, win_rate=0.6), axis=1) / n
    crossed = sequential.log_statistic(n, mean, POLICY.tau) >= math.log(POLICY.threshold)
    outside = np.abs(mean - 0.5) >= sequential.half_width(n, POLICY.tau, POLICY.alpha)
    assert crossed.any() and not crossed.all()
    assert np.array_equal(crossed, outside)


# --- the monitoring rule ---------------------------------------------------------------------


def test_statistic_follows_the_formula():
    # 85 duels, 53 wins: x̄ = 53/85; Λ = sqrt(.25/1.1) · exp(85²·.01·(x̄-.5)² / (2·.25·1.1))
    late = sequential.SequentialPolicy(min_duels=85)  # looks only once all 85 are in
    state = sequential.test_duels([1.0] * 53 + [0.0] * 32, late)
    assert (state.verdict, state.duels) == ("running", 85)
    mean = 53 / 85
    expected = math.sqrt(0.25 / 1.1) * math.exp(85**2 * 0.01 * (mean - 0.5) ** 2 / 0.55)
    assert state.statistic == pytest.approx(expected, rel=1e-12)
    assert state.win_rate == pytest.approx(mean)
    width = math.sqrt(2 * 0.25 * 1.1 / (85**2 * 0.01) * math.log(math.sqrt(1.1 / 0.25) / 0.05))
    assert (state.low, state.high) == pytest.approx((mean - width, mean + width))
    assert state.threshold == pytest.approx(20.0)


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_a_plain_loop_over_the_duels(seed):
    rng = np.random.default_rng(100 + seed)
    win_rate = rng.uniform(0.3, 0.7)
    outcomes = duels(seed=200 + seed, runs=1, win_rate=win_rate, n=int(rng.integers(0, 500)))[0]
    state = sequential.test_duels(outcomes.tolist(), POLICY)
    assert (state.verdict, state.duels) == reference(outcomes.tolist(), POLICY)
    assert state.ignored == len(outcomes) - state.duels


def test_no_decision_before_min_duels():
    state = sequential.test_duels([1.0] * 29, POLICY)
    assert state.statistic >= state.threshold  # it would have crossed long before...
    assert state.verdict == "running"  # ...but 29 < min_duels
    assert sequential.test_duels([1.0] * 30, POLICY).verdict == "better"
    assert sequential.test_duels([0.0] * 30, POLICY).verdict == "worse"
    found = sequential.decide_many(duels(seed=5, runs=2000, win_rate=0.9), POLICY)
    assert found.duels.min() == POLICY.min_duels  # a strong winner decides at once, not earlier
    strict = sequential.SequentialPolicy(min_duels=100)
    assert sequential.decide_many(duels(seed=5, runs=2000, win_rate=0.9), strict).duels.min() == 100


def test_the_first_crossing_stays_decided():
    # crosses at duel 30, then the champion wins everything: the mean falls back to 0.5
    outcomes = [1.0] * 30 + [0.0] * 30
    state = sequential.test_duels(outcomes, POLICY)
    assert (state.verdict, state.duels, state.ignored) == ("better", 30, 30)
    assert state.win_rate == 1.0 and state.statistic >= state.threshold
    # the statistic of all 60 duels is back at Λ < 1; a test read at the end would not decide
    n = np.array([60])
    assert sequential.log_statistic(n, np.array([0.5]), POLICY.tau)[0] < 0
    # decisions are monotone in time: once decided, every longer prefix gives the same verdict
    outcomes = duels(seed=6, runs=1, win_rate=0.6, n=600)[0].tolist()
    states = sequential.trajectory(outcomes, POLICY)
    first = next(i for i, s in enumerate(states) if s.decided)
    assert {(s.verdict, s.duels) for s in states[first:]} == {(states[first].verdict, first + 1)}
    assert all(s.verdict == "running" for s in states[:first])
    for k in (1, 29, first, first + 1, 450, 600):  # each state is test_duels of its prefix
        assert states[k - 1] == sequential.test_duels(outcomes[:k], POLICY)
    assert sequential.trajectory([], POLICY) == []


def test_max_duels_ends_in_no_difference():
    outcomes = [1.0, 0.0] * 250  # 500 duels, exactly even
    state = sequential.test_duels(outcomes, POLICY)
    assert (state.verdict, state.duels, state.ignored) == ("no_difference", 400, 100)
    assert sequential.test_duels(outcomes[:399], POLICY).verdict == "running"
    # a crossing after max_duels does not count
    late = [1.0, 0.0] * 200 + [1.0] * 200
    assert sequential.test_duels(late, POLICY).verdict == "no_difference"


def test_empty_and_bad_input():
    state = sequential.test_duels([], POLICY)
    assert (state.duels, state.win_rate, state.low, state.high) == (0, None, None, None)
    assert (state.statistic, state.verdict) == (1.0, "running")
    for bad in ([1.0, 2.0], [0.5, -0.1], [float("nan")]):
        with pytest.raises(ValueError):
            sequential.test_duels(bad, POLICY)
    with pytest.raises(ValueError):
        sequential.SequentialPolicy(alpha=0)
    with pytest.raises(ValueError):
        sequential.SequentialPolicy(tau=0)
    with pytest.raises(ValueError):
        sequential.SequentialPolicy(min_duels=500, max_duels=400)


# --- the manager's line ----------------------------------------------------------------------


def state(**fields) -> sequential.SequentialState:
    base = dict(duels=85, win_rate=0.62, low=0.51, high=0.72, statistic=27.1, threshold=20.0)
    return sequential.SequentialState(**{**base, "verdict": "running", **fields})


def test_describe():
    assert (
        state(verdict="better").describe()
        == "challenger preferred in 62% of 85 duels (95% interval 51%–72%): better (Λ 27.1 ≥ 20)"
    )
    assert state(verdict="worse", win_rate=0.3, low=0.2, high=0.4).describe() == (
        "challenger preferred in 30% of 85 duels (95% interval 20%–40%): worse (Λ 27.1 ≥ 20)"
    )
    assert state(statistic=3.24).describe() == (
        "challenger preferred in 62% of 85 duels (95% interval 51%–72%): "
        "running: needs Λ ≥ 20 or 400 duels (Λ 3.2 now)"
    )
    assert (
        state(duels=12, statistic=1.5)
        .describe()
        .endswith("running: needs 30 duels, then Λ ≥ 20, or 400 duels (Λ 1.5 now)")
    )
    assert state(duels=400, win_rate=0.52, statistic=1.2, verdict="no_difference").describe() == (
        "challenger preferred in 52% of 400 duels (95% interval 51%–72%): "
        "no difference detected (Λ 1.2 < 20): the champion stays"
    )
    assert (
        state(verdict="better", ignored=14)
        .describe()
        .endswith("better (Λ 27.1 ≥ 20); 14 later duels not counted")
    )
    empty = sequential.test_duels([], POLICY).describe()
    assert empty == "no duels yet: running: needs 30 duels, then Λ ≥ 20, or 400 duels"
    strict = sequential.SequentialPolicy(alpha=0.01, max_duels=1000)
    assert sequential.test_duels([1.0] * 40, strict).describe() == (
        "challenger preferred in 100% of 30 duels (99% interval 61%–100%): "
        "better (Λ 2,411 ≥ 100); 10 later duels not counted"
    )
    adoptions = state(duels=1, win_rate=0.5, verdict="running", ignored=0)
    assert adoptions.describe("challenger’s draft used", "adoption").startswith(
        "challenger’s draft used in 50% of 1 adoption (95% interval"
    )
    assert "needs 30 adoptions, then" in adoptions.describe("its draft used", "adoption")
