"""Reliability weights as sampling: none of the losses we train with takes a per-example weight
(MultipleNegativesRankingLoss, the cross-encoder's BCE, ORPO), so a weight decides how often an
example is seen instead.

Weights are relative: divided by the mean of the positive ones, each quota is rounded up or
down at random with the odds of its fraction (seeded). Equal weights give every example once,
whatever their scale; an agent trusted half as much as the average contributes about half of
their examples, one trusted twice as much about two copies of each; a weight of 0, below or
NaN leaves the example out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def copies(weights: Sequence[float], seed: int, cap: int | None = None) -> list[int]:
    """How many times each example is trained on, in the order given (at most ``cap``)."""
    usable = [w if w > 0 else 0.0 for w in weights]  # NaN > 0 is False: dropped too
    positive = [w for w in usable if w > 0]
    if not positive:
        return [0] * len(usable)
    mean = math.fsum(positive) / len(positive)
    rng = random.Random(seed)
    found = []
    for weight in usable:
        quota = round(weight / mean, 9)  # equal weights must give exactly 1
        if cap is not None:
            quota = min(quota, cap)
        whole = math.floor(quota)
        found.append(whole + (rng.random() < quota - whole))
    return found
