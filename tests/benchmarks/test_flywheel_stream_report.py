"""The streaming mode's reading of its checkpoints: the goals, the spread over seeds, and
the copies of the data dir each seed streams on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import flywheel as bench
from benchmarks import flywheel_stream as stream

RECALL, PRECISION = "recall@20", "precision@5"
METRICS = (RECALL, PRECISION)


def point(tickets: int, retrained: bool, on: float, off: float) -> dict:
    """A checkpoint with the same figure for both metrics."""
    return {
        "tickets": tickets,
        "retrained": retrained,
        "memory_entries": tickets * 4,
        "on": {RECALL: on, PRECISION: on},
        "off": {RECALL: off, PRECISION: off},
        "moved": 0,
        "seconds": 1.0,
    }


def seed(n: int, *, alone: float, retrained: float, both: float, dip: float = 0.0) -> dict:
    """Base 0.40; at ticket 200 the memory alone reads ``alone``; the cycle's models alone
    ``retrained``, with the memory ``both`` at the end; ``dip`` below off at ticket 100."""
    return {
        "seed": n,
        "checkpoints": [
            point(0, False, 0.40, 0.40),
            point(100, False, 0.40 - dip, 0.40),
            point(200, False, alone, 0.40),
            point(200, True, retrained + 0.01, retrained),
            point(400, True, both, retrained),
        ],
        "cycle": None,
    }


def test_the_memory_alone_is_read_at_the_retrain_point_against_the_cycles_uplift():
    seeds = [
        seed(1, alone=0.45, retrained=0.48, both=0.52),
        seed(2, alone=0.47, retrained=0.50, both=0.53),
    ]
    found = stream.goals(seeds, 200, METRICS)[RECALL]
    assert found["memory_alone_at_retrain"]["mean"] == pytest.approx(0.06)
    assert found["cycle_uplift"]["mean"] == pytest.approx(0.09)
    assert found["memory_alone_share_of_cycle"] == pytest.approx(0.667, abs=1e-3)
    assert found["memory_alone_goal_met"] is True
    end = found["memory_plus_retrain_minus_retrain_at_end"]
    assert end["mean"] == pytest.approx(0.035) and end["n"] == 2
    # two seeds, 0.04 and 0.03: the t-interval's lower end is below zero, so no claim
    assert end["ci95"][0] < 0 and found["beats_retrain_alone"] is False

    seeds.append(seed(3, alone=0.46, retrained=0.49, both=0.525))
    three = stream.goals(seeds, 200, METRICS)[RECALL]
    assert three["memory_plus_retrain_minus_retrain_at_end"]["ci95"][0] > 0
    assert three["beats_retrain_alone"] is True


def test_a_memory_short_of_half_the_cycle_or_below_off_once_misses_its_goals():
    seeds = [
        seed(1, alone=0.42, retrained=0.50, both=0.50, dip=0.02),
        seed(2, alone=0.42, retrained=0.50, both=0.50),
    ]
    found = stream.goals(seeds, 200, METRICS)[PRECISION]
    assert found["memory_alone_share_of_cycle"] == pytest.approx(0.2)
    assert found["memory_alone_goal_met"] is False
    assert found["worst_on_minus_off"]["min"] == pytest.approx(-0.02)
    assert found["never_worse_than_off"] is False


def test_a_cycle_that_changed_nothing_has_no_share_to_reach():
    seeds = [seed(1, alone=0.43, retrained=0.40, both=0.43)]
    found = stream.goals(seeds, 200, METRICS)[RECALL]
    assert found["cycle_uplift"]["mean"] == 0
    assert found["memory_alone_share_of_cycle"] is None
    assert found["memory_alone_goal_met"] is False
    assert found["memory_plus_retrain_minus_retrain_at_end"]["ci95"] is None


def test_checkpoints_are_gathered_over_seeds_with_their_range():
    report = {
        "seeds": [
            seed(1, alone=0.45, retrained=0.5, both=0.5),
            seed(2, alone=0.49, retrained=0.5, both=0.5),
        ]
    }
    rows = stream.checkpoint_rows(report)
    assert [(r["tickets"], r["retrained"]) for r in rows] == [
        (0, False),
        (100, False),
        (200, False),
        (200, True),
        (400, True),
    ]
    at_retrain = rows[2][RECALL]["on"]
    assert (at_retrain["min"], at_retrain["max"], at_retrain["mean"]) == (0.45, 0.49, 0.47)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_a_data_dir_copy_keeps_its_files_owners(tmp_path: Path):
    source = tmp_path / "template"
    (source / "pg" / "base").mkdir(parents=True)
    (source / "pg" / "base" / "1").write_text("page")
    (source / "ingested.json").write_text("{}")
    for path in (source / "pg", source / "pg" / "base", source / "pg" / "base" / "1"):
        os.chown(path, 65534, 65534)  # nobody, as the embedded Postgres's own user would be
    stream.copy_data_dir(source, tmp_path / "seed-1")
    copied = tmp_path / "seed-1"
    assert (copied / "pg" / "base" / "1").stat().st_uid == 65534
    assert (copied / "pg").stat().st_uid == 65534
    assert (copied / "ingested.json").stat().st_uid == os.geteuid()


def test_the_stream_takes_its_own_knowledge_base(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--stream", "--reuse", "--data-dir", "/tmp/x"])
    assert "--stream ingests its own knowledge base" in capsys.readouterr().err
    args = bench.parse_args(["--stream", "--seeds", "1,2", "--every", "50"])
    assert (args.seeds, args.every, args.retrain_at, args.refresh_every) == ([1, 2], 50, None, 20)
