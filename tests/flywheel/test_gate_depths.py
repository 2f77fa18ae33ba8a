"""The gate reads the metrics at the depths drafts use (AITL_RETRIEVE_K, AITL_CONTEXT_K), and a
metric at its ceiling for both sides passes the decision to the next instead of refusing every
challenger forever; what the gate decided on reaches the run's record, the CLI and the notes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from aitl.app.cli import app
from flywheel import store
from flywheel.evaluation import (
    PAPER,
    EvalResult,
    gate_metrics,
    reported_only,
    retrieval_metrics,
)
from flywheel.registry import GatePolicy, decide
from flywheel.reports import decided_by, decision_lines, decision_summary
from tests.conftest import make_settings

# one relevant chunk per ticket, in a knowledge base of 30 chunks
QRELS = {f"q{i}": {f"gold{i}": 1} for i in range(4)}
POLICY = GatePolicy(margin=0.01, tolerance=0.02, retrieve_k=20, context_k=5)


def ranked_at(*ranks: int) -> EvalResult:
    """The real metrics of a run that finds each ticket's chunk at the given rank."""
    run = {}
    for i, rank in enumerate(ranks):
        others = [f"other{n}" for n in range(30)]
        order = [*others[: rank - 1], f"gold{i}", *others[rank - 1 :]]
        run[f"q{i}"] = {chunk: float(len(order) - r) for r, chunk in enumerate(order)}
    return retrieval_metrics(QRELS, run, retrieve_k=20, context_k=5)


def test_metric_names_follow_the_settings_depths(tmp_path):
    settings = make_settings("postgresql://x/y", tmp_path, retrieve_k=10, context_k=3)
    policy = GatePolicy.from_settings(settings)
    assert policy.order("retriever") == ("recall@10", "ndcg@3", "mrr@10")
    assert policy.order("reranker") == ("precision@3", "ndcg@3", "mrr@10")
    with pytest.raises(ValueError, match="generator"):
        policy.order("generator")

    run = {"q0": {"x": 3.0, "gold0": 2.0}, "q1": {**{f"n{i}": 20.0 - i for i in range(10)}}}
    run["q1"]["gold1"] = 1.0  # rank 11: inside the paper's recall@75, outside recall@10
    result = retrieval_metrics(
        {"q0": {"gold0": 1}, "q1": {"gold1": 1}}, run, retrieve_k=10, context_k=3
    )
    assert list(result.metrics)[:4] == ["recall@10", "precision@3", "ndcg@3", "mrr@10"]
    assert set(PAPER) <= set(result.metrics), "the paper's figures are kept for reports"
    assert result.primary == "recall@10"
    assert result.metrics["recall@10"] == pytest.approx(0.5)
    assert result.metrics["recall@75"] == pytest.approx(1.0)
    assert result.metrics["precision@3"] == pytest.approx((1 / 3 + 0) / 2)


def test_a_depth_that_coincides_with_the_papers_is_one_metric():
    assert list(gate_metrics(75, 8)) == ["recall@75", "precision@8", "ndcg@8", "mrr@10", "ndcg@10"]
    assert list(gate_metrics(20, 10)) == [
        "recall@20",
        "precision@10",
        "ndcg@10",
        "mrr@10",
        "recall@75",
        "precision@8",
    ]
    assert reported_only(20, 5) == {"recall@75", "precision@8", "ndcg@10"}
    assert reported_only(75, 10) == {"precision@8"}, "at the drafts' depths they gate"


def test_at_the_ceiling_of_recall_the_gate_decides_on_ndcg():
    champion = ranked_at(3, 2, 4, 1)
    challenger = ranked_at(1, 1, 2, 1)  # the same chunks found, ranked higher
    assert champion.metrics["recall@20"] == challenger.metrics["recall@20"] == 1.0
    decision = decide(champion, challenger, POLICY, kind="retriever")
    assert decision.promote
    assert decision.metric == "ndcg@5" and decision.ceiling == ("recall@20",)
    assert decision.reason.startswith(
        "recall@20 is at its ceiling (1.0000) for both: deciding on ndcg@5; ndcg@5 "
    )
    assert "nothing else worse past tolerance" in decision.reason


def test_at_the_ceiling_a_challenger_that_ranks_no_better_is_refused():
    champion = ranked_at(3, 2, 4, 1)
    decision = decide(champion, ranked_at(3, 2, 4, 1), POLICY, kind="retriever")
    assert not decision.promote
    assert (decision.metric, decision.ceiling) == ("ndcg@5", ("recall@20",))
    assert "deciding on ndcg@5" in decision.reason and "(needs +0.0100)" in decision.reason
    # a gain smaller than the margin is not enough either
    tiny = GatePolicy(margin=0.5, tolerance=0.02, retrieve_k=20, context_k=5)
    assert not decide(champion, ranked_at(1, 1, 2, 1), tiny, kind="retriever").promote


def test_when_every_gate_metric_is_at_its_ceiling_the_champion_stays():
    perfect = ranked_at(1, 1, 1, 1)
    decision = decide(perfect, ranked_at(1, 1, 1, 1), POLICY, kind="retriever")
    assert not decision.promote and decision.metric == ""
    assert decision.ceiling == ("recall@20", "ndcg@5", "mrr@10")
    assert decision.reason == (
        "recall@20, ndcg@5 and mrr@10 are all at their ceiling (1.0000) for both: no metric"
        " can show a gain, so the champion stays"
    )
    # even a gate told to accept anything does not promote what cannot be told apart
    anything = GatePolicy(margin=-1.0, tolerance=1.0)
    assert not decide(perfect, perfect, anything, kind="retriever").promote


def test_a_reranker_is_decided_on_precision_at_the_context_depth():
    champion = ranked_at(6, 7, 2, 5)  # two of four kept in the top 5
    challenger = ranked_at(1, 3, 2, 4)  # all four kept
    decision = decide(champion, challenger, POLICY, kind="reranker")
    assert decision.promote and decision.metric == "precision@5" and decision.ceiling == ()
    assert decision.reason.startswith("precision@5 0.1000 → 0.2000")


def test_the_papers_metrics_are_reported_but_do_not_block():
    base = {"recall@20": 0.60, "precision@5": 0.30, "ndcg@5": 0.40, "mrr@10": 0.50}
    champion = EvalResult({**base, "recall@75": 0.9, "precision@8": 0.30}, "recall@20", True, 10)
    paper_fell = {**base, "recall@20": 0.65, "recall@75": 0.5, "precision@8": 0.1}
    gained = decide(champion, EvalResult(paper_fell, "recall@20", True, 10), POLICY)
    assert gained.promote, gained.reason
    pipeline_fell = {**paper_fell, "ndcg@5": 0.30}
    refused = decide(champion, EvalResult(pipeline_fell, "recall@20", True, 10), POLICY)
    assert not refused.promote
    assert refused.reason == "recall@20 0.6000 → 0.6500, but ndcg@5 fell 0.4000 → 0.3000"


def test_an_explicit_order_decides_on_that_metric_alone():
    """The generator's gate: its primary "semantic", every other reply metric guarded."""
    before = EvalResult({"semantic": 0.70, "rouge_l": 0.30}, "semantic", True, 5)
    after = EvalResult({"semantic": 0.75, "rouge_l": 0.20}, "semantic", True, 5)
    refused = decide(before, after, POLICY, order=("semantic",))
    assert not refused.promote and "rouge_l fell" in refused.reason
    assert refused.metric == "semantic"
    assert decide(before, after, POLICY) == refused, "the primary by default"


def test_reports_say_which_metric_decided_and_old_runs_still_read():
    decisions = {
        "retriever": {
            "promoted": True,
            "reason": "recall@20 is at its ceiling (1.0000) for both: deciding on ndcg@5; ...",
            "metric": "ndcg@5",
            "at_ceiling": ["recall@20"],
        },
        "reranker": {
            "promoted": False,
            "reason": "precision@5 0.2 → 0.2",
            "metric": "precision@5",
            "at_ceiling": [],
        },
        "generator": {"promoted": False, "reason": "skipped: 0 preference pairs"},
    }
    assert decision_summary(decisions) == (
        "retriever: promoted on ndcg@5 (recall@20 at its ceiling); reranker: kept on"
        " precision@5; generator: kept"
    )
    lines = decision_lines(decisions)
    assert lines[0].startswith(
        "retriever: promoted, decided on ndcg@5 (recall@20 is at its ceiling"
    )
    assert lines[1] == (
        "reranker: kept the current model, decided on precision@5 (precision@5 0.2 → 0.2)"
    )
    assert lines[2] == "generator: kept the current model (skipped: 0 preference pairs)"
    stuck = {"promoted": False, "metric": None, "at_ceiling": ["recall@20", "ndcg@5", "mrr@10"]}
    assert decided_by(stuck) == " (every gate metric at its ceiling: recall@20, ndcg@5, mrr@10)"
    old = {"retriever": {"promoted": True, "reason": "recall@75 0.50 → 0.76"}}
    assert decision_summary(old) == "retriever: promoted"
    assert decision_lines(old) == ["retriever: promoted (recall@75 0.50 → 0.76)"]


def test_flywheel_runs_lists_the_deciding_metric_beside_runs_recorded_before_it(
    database_url, db, tmp_path
):
    with db.connection() as conn:
        for decisions in (
            {"retriever": {"promoted": True, "reason": "recall@75 0.50 → 0.76"}},
            {
                "retriever": {
                    "promoted": False,
                    "reason": "…",
                    "metric": "ndcg@5",
                    "at_ceiling": ["recall@20"],
                }
            },
        ):
            run_id = store.start_run(conn, "cli", datetime.now(UTC), {})
            store.finish_run(conn, run_id, "succeeded", decisions=decisions, artefacts={})
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path / "data")}
    listed = CliRunner().invoke(app, ["flywheel", "runs"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())
    assert "retriever: promoted" in text and "ndcg@5" in text and "ceiling" in text
