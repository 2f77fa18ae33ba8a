"""Duel benchmark: the always-valid A/B test (flywheel.sequential) on simulated duels.

At each true win rate of the challenger (ties 20% of duels, the rest split to match the rate)
it runs the test with the default policy on many seeded runs of ``max_duels`` duels, monitored
after every duel, and prints a Markdown table: the share of runs ending "better" (promoted),
"worse" and "no difference" (both retire the challenger), and the median duels to a decision;
then the false-promotion rate measured at 0.50 against its bound alpha/2. Pure numpy, no
database; a few seconds. Usage:
``.venv/bin/python benchmarks/duels.py [--runs 10000] [--seed 20240611] [--results PATH]``.
"""

from __future__ import annotations

import os
import sys

# Python puts the script's folder first on the import path, where ``import flywheel`` would
# find benchmarks/flywheel.py instead of the product's package; the project root goes in front
# of it (``benchmarks`` is a namespace package there).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.sequential import SequentialPolicy, decide_many

RATES = (0.30, 0.40, 0.45, 0.50, 0.55, 0.60, 0.70)
TIES = 0.2
SEED = 20240611
CHUNK = 5000  # runs simulated at once (a chunk of 5,000 × 400 duels is ~16 MB per array)
RESULTS = Path(__file__).resolve().parent / "results" / "duels.json"


def simulate(
    rate: float, runs: int, policy: SequentialPolicy, rng: np.random.Generator, ties: float
) -> dict[str, Any]:
    """The test's verdicts on ``runs`` runs at one true win rate."""
    wins = rate - ties / 2
    losses = 1 - ties - wins
    if min(wins, losses) < 0:
        raise ValueError(f"win rate {rate} is out of reach with {ties:.0%} ties")
    verdicts, duels = [], []
    for start in range(0, runs, CHUNK):
        size = min(CHUNK, runs - start)
        outcomes = rng.choice(
            np.array([0.0, 0.5, 1.0]), size=(size, policy.max_duels), p=[losses, ties, wins]
        )
        found = decide_many(outcomes, policy)
        verdicts.append(found.verdicts)
        duels.append(found.duels)
    verdict, n = np.concatenate(verdicts), np.concatenate(duels)
    decided = (verdict == "better") | (verdict == "worse")
    return {
        "win_rate": rate,
        "runs": runs,
        "better": float(np.mean(verdict == "better")),
        "worse": float(np.mean(verdict == "worse")),
        "no_difference": float(np.mean(verdict == "no_difference")),
        "median_duels_decided": float(np.median(n[decided])) if decided.any() else None,
        "median_duels_any": float(np.median(n)),
    }


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| true win rate | better | worse | no difference | median duels to better/worse "
        "| median duels to any verdict |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        median = row["median_duels_decided"]
        lines.append(
            f"| {row['win_rate']:.2f} | {row['better']:.1%} | {row['worse']:.1%} "
            f"| {row['no_difference']:.1%} | {'—' if median is None else f'{median:.0f}'} "
            f"| {row['median_duels_any']:.0f} |"
        )
    return lines


def false_promotion(rows: Sequence[dict[str, Any]], policy: SequentialPolicy) -> list[str]:
    null = next((row for row in rows if math.isclose(row["win_rate"], 0.5)), None)
    if null is None:
        return []
    runs, bound = null["runs"], policy.alpha / 2
    margin = 3 * math.sqrt(bound * (1 - bound) / runs)  # binomial 3 sigma at the bound
    any_decision = null["better"] + null["worse"]
    return [
        f"false promotion at 0.50: {null['better']:.2%} of {runs:,} runs "
        f"(bound alpha/2 = {bound:.1%}; 3-sigma simulation margin ±{margin:.2%})",
        f"any decision at 0.50: {any_decision:.2%} (bound alpha = {policy.alpha:.0%})",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = SequentialPolicy()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000, help="simulated runs per win rate")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the simulation")
    parser.add_argument("--ties", type=float, default=TIES, help="share of duels that are ties")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="the policy's alpha")
    parser.add_argument("--tau", type=float, default=defaults.tau, help="the policy's tau")
    parser.add_argument("--min-duels", type=int, default=defaults.min_duels)
    parser.add_argument("--max-duels", type=int, default=defaults.max_duels)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 0 <= args.ties < 1:
        parser.error("--ties must be in [0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    policy = SequentialPolicy(
        alpha=args.alpha, tau=args.tau, min_duels=args.min_duels, max_duels=args.max_duels
    )
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows = [simulate(rate, args.runs, policy, rng, args.ties) for rate in RATES]
    seconds = round(time.perf_counter() - started, 2)
    print(
        f"policy: alpha {policy.alpha}, tau {policy.tau}, {policy.min_duels}–{policy.max_duels} "
        f"duels; {args.runs:,} runs per rate, {args.ties:.0%} ties, seed {args.seed}\n"
    )
    print("\n".join(table(rows)))
    print()
    for line in false_promotion(rows, policy):
        print(line)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "policy": asdict(policy),
        "runs": args.runs,
        "ties": args.ties,
        "seed": args.seed,
        "rates": rows,
        "seconds": seconds,
    }
    args.results.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {args.results}; total {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
