"""The KB pipeline benchmark, tiny: one backend end to end on the test's database, and the
goals it draws across backends (speed is left to the benchmark itself)."""

from __future__ import annotations

import copy

import pytest

from benchmarks import kb_pipeline
from tests.conftest import create_database, drop_database, make_settings


@pytest.fixture(scope="module")
def torch_run(pg_server_url, template_url, tmp_path_factory):
    """One run on torch: 40 dstc11 documents, 6 recall queries, 3 timed drafts."""
    url = create_database(pg_server_url)
    settings = make_settings(url, tmp_path_factory.mktemp("kb-bench"), encoder_backend="torch")
    args = kb_pipeline.parse_args(["--chunks", "40", "--queries", "6", "--drafts", "3"])
    try:
        yield kb_pipeline.run_backend(settings, args)
    finally:
        drop_database(pg_server_url, url)


def test_a_run_reports_its_backend_ingest_recall_drafts_and_query_embedding(torch_run):
    run = torch_run
    assert run["backend"] == "torch" and run["prepare"]["backend"] == "torch"
    assert run["prepare"]["choice"]["backend"] == "torch" and run["prepare"]["seconds"] > 0
    assert run["ingest"]["chunks_in_kb"] == run["ingest"]["chunks_ingested"] == 40
    assert run["ingest"]["chunks_per_s"] > 0
    assert run["recall"]["queries"] == 6 and 0 <= run["recall"]["recall_at_10"] <= 1
    assert run["draft_latency"]["drafts"] == 3 and run["query"]["queries"] == 3
    assert run["query"]["p50_ms"] > 0
    assert "ingest_chunks_per_s" not in run["goals"]  # the default backend's goal alone
    kb_pipeline.results_table(run)  # renders


def test_default_backend_is_the_products():
    args = kb_pipeline.parse_args([])
    assert args.backend == kb_pipeline.DEFAULT_BACKEND == "auto" and args.backends is None
    assert kb_pipeline.parse_args(["--backends", "all"]).backends == list(kb_pipeline.BACKENDS)
    assert kb_pipeline.parse_args(["--backends", "onnx,torch"]).backends == ["onnx", "torch"]
    with pytest.raises(SystemExit):
        kb_pipeline.parse_args(["--backends", "tensorrt"])


def _as(run: dict, backend: str, *, recall: float, p95: float, ingest: float) -> dict:
    other = copy.deepcopy(run)
    other["backend"] = backend
    other["recall"]["recall_at_10"] = recall
    other["draft_latency"]["p95_ms"] = p95
    other["ingest"]["chunks_per_s"] = ingest
    return other


def test_backends_are_held_to_torch_on_recall_and_draft_p95(torch_run):
    torch = _as(torch_run, "torch", recall=0.976, p95=20.0, ingest=95.0)
    runs = {
        "torch": torch,
        "openvino": _as(torch_run, "openvino", recall=0.972, p95=14.0, ingest=450.0),
        "onnx": _as(torch_run, "onnx", recall=0.969, p95=21.0, ingest=120.0),
    }

    goals = kb_pipeline.comparison_goals(runs)

    assert goals["openvino: recall_at_10_unchanged"]["pass"] is True  # within 0.005
    assert goals["openvino: draft_p95_no_worse"]["pass"] is True
    assert goals["onnx: recall_at_10_unchanged"]["pass"] is False
    assert goals["onnx: draft_p95_no_worse"]["pass"] is False
    assert goals["auto: ingest_chunks_per_s"]["pass"] is None  # the default did not run
    assert "torch: recall_at_10_unchanged" not in goals


def test_without_torch_the_comparisons_are_not_measured_and_a_failed_run_is_a_miss(torch_run):
    auto = _as(torch_run, "auto", recall=0.98, p95=14.0, ingest=410.0)
    auto["goals"] = kb_pipeline.run_goals(
        "auto",
        kb_pipeline.IngestFigures(10, 10, 0, 4100, 4100, 10.0, 0.0),
        kb_pipeline.RecallFigures(6, 6, 0.98, 0.9, 1, 0, 1.0, 2.0),
        kb_pipeline.PlanFigures(True, True, "", ""),
        kb_pipeline.LatencyFigures(3, 10.0, 14.0, 15.0, 11.0),
    )
    runs = {"auto": auto, "onnx": {"backend": "onnx", "error": "RuntimeError: no export"}}

    goals = kb_pipeline.comparison_goals(runs)

    assert goals["auto: ingest_chunks_per_s"] == {"goal": 400.0, "measured": 410.0, "pass": True}
    assert goals["auto: recall_at_10_unchanged"]["pass"] is None
    assert goals["onnx: ran"]["pass"] is False
    report = kb_pipeline.results_json(runs, 1.0)
    assert report["backends"] == ["auto", "onnx"] and report["default_backend"] == "auto"
    kb_pipeline.backends_table(runs)  # renders a failed run too
    kb_pipeline.goals_table(goals)
