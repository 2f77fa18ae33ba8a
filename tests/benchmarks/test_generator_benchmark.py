"""The generator benchmark, tiny: a one-layer LM instead of SmolLM2, a few dstc11 tickets and
200 knowledge documents. It runs end to end on the test's database, so the benchmark cannot
rot unnoticed; it checks the flow and the report, not the model's quality or speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import generator as bench
from tests.conftest import make_settings
from tests.support.tiny_models import build_tiny_causal_lm

TRAIN, HELD, PAIRS = 14, 2, 8


@pytest.mark.slow
def test_tiny_run_trains_on_stored_clicks_and_scores_the_three_generators(
    database_url: str, tmp_path: Path
) -> None:
    tiny = build_tiny_causal_lm(tmp_path / "tiny-lm")
    results = tmp_path / "generator.json"
    args = bench.parse_args(
        [
            *("--train-tickets", str(TRAIN), "--heldout", str(HELD), "--kb-docs", "200"),
            *("--max-pairs", str(PAIRS), "--agents", "2", "--bootstrap", "200"),
            *("--llm-path", str(tiny), "--results", str(results)),
        ]
    )
    # 16 new tokens keep the tiny model's 512-token context room for a dstc11 dialogue
    settings = make_settings(database_url, tmp_path / "data", hf_max_new_tokens=16)

    report = bench.run(settings, args)

    assert json.loads(results.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["caps"] == {
        "train_tickets": TRAIN,
        "heldout_tickets": HELD,
        "max_pairs": PAIRS,
        "kb_docs": 200,
        "agents": 2,
        "noise": 0.2,
    }
    assert report["settings"]["llm_challenger"] is True  # conftest turns it off for the suite

    # every training ticket drafted A/B and clicked once per slot, through the recorder
    annotation = report["annotation"]
    assert annotation["events_stored"] == 2 * TRAIN
    assert annotation["events_by_kind"] == {"adoption": TRAIN, "preference": TRAIN}
    assert sum(annotation["closer"].values()) == sum(annotation["preferred"].values()) == TRAIN
    assert sum(annotation["adoption"].values()) == TRAIN

    # the pairs come from those stored events through the cycle's judge and datasets, capped
    pairs = report["pairs"]
    assert pairs["from_stored_events"] and pairs["judge"] == "rules"
    assert pairs["events"] == 2 * TRAIN
    assert pairs["cycle_eval_tickets"] >= 1, "the cycle holds out its own newest tickets"
    assert pairs["pairs_built"] > PAIRS and pairs["pairs_used"] == PAIRS
    assert pairs["left_by_cap"] == pairs["pairs_built"] - PAIRS
    assert sum(pairs["used_by_source"].values()) == PAIRS
    assert sum(pairs["built_by_source"].values()) == pairs["pairs_built"]
    # no relevance marks, so no held-out retrieval query: a real cycle would stop before training
    assert pairs["cycle_eval_queries"] == 0 and not pairs["cycle_would_train"]
    assert "relevant article" in pairs["cycle_would_not_because"]
    assert (
        pairs["built_by_source"].get("preference: LLM > extractive", 0)
        + pairs["built_by_source"].get("preference: extractive > LLM", 0)
        > 0
    )

    # one ORPO + LoRA run on the given base, and the adapter is what drafted "LLM trained"
    training = report["training"]
    assert Path(training["base"]) == tiny.resolve()
    assert training["pairs"] == PAIRS and training["steps"] > 0 and training["seconds"] > 0
    assert (Path(training["adapter"]) / "adapter_config.json").is_file()
    assert report["checks"] == {
        "context_mismatches": 0,
        "extractive_mismatches": 0,
        "trained_adapter_served": True,
        "base_without_adapter": True,
    }

    # three generators scored on the same held-out tickets, every figure a share
    assert len(report["heldout"]) == HELD
    assert set(report["scores"]) == set(bench.GENERATORS)
    for row in report["heldout"]:
        assert set(row["replies"]) == set(bench.GENERATORS)
        assert all(text.strip() for text in row["replies"].values())
        assert row["reference"] and row["passages"]
    for name, means in report["scores"].items():
        assert set(means) == set(bench.METRICS)
        for metric, value in means.items():
            # every figure a share, but "semantic": a cosine, which a tiny model's babble can
            # take a hair below 0
            low = -1 if metric == "semantic" else 0
            assert value is None or low <= value <= 1, (name, metric, value)
            interval = report["intervals"][name][metric]
            assert interval is None or low <= interval[0] <= interval[1] <= 1, (metric, interval)
        product = report["product_scores"][name]
        assert product["replies"] == HELD
        assert product["semantic"] == pytest.approx(means["semantic"], abs=1e-4)
    for found in report["gaps"].values():
        for metric in bench.METRICS:
            assert found[metric]["tickets"] <= HELD
            gap = found[metric]["gap"]
            assert gap is None or -1 <= gap <= 1

    # the goals, each with a verdict; the training goal only counts at the default cap
    assert set(report["goals"]) == {
        "helpfulness_uplift",
        "adoption_uplift",
        "drafting_p95_seconds",
        "training_seconds",
    }
    assert all(goal["pass"] in (True, False) for goal in list(report["goals"].values())[:3])
    assert report["goals"]["training_seconds"]["pass"] is None
    assert report["latency"][bench.TRAINED]["two_drafts_p95_s"] > 0
    assert set(report["versus_champion"]["metrics"]) == {
        "rouge_l",
        "semantic",
        "faithfulness",
        "adoption",
    }


def test_options_are_checked():
    with pytest.raises(SystemExit):
        bench.parse_args(["--heldout", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--noise", "1.5"])
    args = bench.parse_args([])
    assert (args.max_pairs, args.llm_path, args.kb_docs) == (None, None, None)
