"""The flywheel benchmark's reading of several training seeds: judge on minus off per seed,
their mean and spread, and the "judge beats no judge" goals read from the means."""

from __future__ import annotations

import pytest

from benchmarks import flywheel as bench
from flywheel.evaluation import METRICS


def live(recall_on: float, recall_off: float) -> dict[str, dict[str, float]]:
    on = dict.fromkeys(METRICS, 0.2) | {"recall@75": recall_on}
    off = dict.fromkeys(METRICS, 0.1) | {"recall@75": recall_off}
    return {"rules": on, "off": off}


def test_the_judge_comparison_reads_the_mean_over_seeds_not_the_first_pair():
    pairs = {42: live(0.70, 0.72), 43: live(0.74, 0.71), 44: live(0.73, 0.72)}
    difference = bench.judge_difference(pairs)
    recall = difference["recall@75"]
    assert recall["per_seed"] == pytest.approx({"42": -0.02, "43": 0.03, "44": 0.01})
    assert recall["mean"] == pytest.approx(0.02 / 3) and recall["on_ahead"] == 2
    assert recall["sd"] == pytest.approx(0.02516611, abs=1e-6)
    assert recall["standard_error"] == pytest.approx(0.02516611 / 3**0.5, abs=1e-6)
    assert difference["precision@8"]["on_ahead"] == 3

    rows = [
        bench.ModelRow("base (shipped MiniLM)", "b", None, dict.fromkeys(METRICS, 0.1), 3),
        bench.ModelRow(bench.live_row("rules"), "r", None, pairs[42]["rules"], 3),
        bench.ModelRow(bench.live_row("off"), "o", None, pairs[42]["off"], 3),
    ]
    assert bench.live_by_judge(rows) == pairs[42]
    goals = bench.goals(rows, {"rules": _cycle()}, difference)
    found = goals["judge_beats_no_judge_recall@75"]
    assert found["pass"] and found["seeds"] == 3, "seed 42 alone would miss"
    assert found["measured"] == pytest.approx([0.7233333, 0.7166667])
    one = bench.goals(rows, {"rules": _cycle()}, bench.judge_difference({42: pairs[42]}))
    assert not one["judge_beats_no_judge_recall@75"]["pass"]
    assert one["judge_beats_no_judge_recall@75"]["seeds"] == 1
    assert one["judge_beats_no_judge_recall@75"]["standard_error"] is None
    shown = list(bench.goals_table(goals).columns[1].cells)
    assert "mean of 3 seeds: on 0.7233 vs off 0.7167 (gap +0.0067 ± 0.0145 s.e.)" in shown


def _cycle() -> bench.CycleFigures:
    return bench.CycleFigures("rules", 1, "succeeded", 10.0, 9.0)


@pytest.mark.parametrize("given", ["42,42", "a,b", "-1", ","])
def test_training_seeds_must_be_distinct_non_negative_integers(given, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--train-seeds", given])
    assert "--train-seeds" in capsys.readouterr().err


def test_training_seeds_default_to_the_products_seed():
    assert bench.parse_args([]).train_seeds is None
    assert bench.parse_args(["--train-seeds", "42, 43"]).train_seeds == [42, 43]
