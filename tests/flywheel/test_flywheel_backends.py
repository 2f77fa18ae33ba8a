"""The flywheel's encoders on the configured inference backend (``AITL_ENCODER_BACKEND``): the
evaluator gives torch's metrics on OpenVINO, a trained model is exported for its base's backend
before the gate reads it, a promoted model serves on it, the run record says how fast each step
encoded, and a missing or failing export falls back to torch without failing anything.

Real MiniLM, real exports, the sample knowledge base in the real database. The exports are
shared by the module's tests (one folder per session), as a data dir shares them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flywheel import store
from flywheel.cycle import Flywheel, corpus
from flywheel.encoding import encoders_line
from flywheel.evaluation import EvalQuery, RetrieverEvaluator
from flywheel.serving import LivePipeline
from rag import encoders, factory
from tests.flywheel.test_flywheel import (  # noqa: F401 (fixtures)
    annotated,
    annotated_template,
    assert_index_matches_model,
)
from tests.support.cli import flywheel_runs
from tests.support.flywheel import gold_chunks, sample_tickets
from tests.support.tiny_models import build_cross_encoder

pytestmark = pytest.mark.slow
TOLERANCE = 0.005  # the bound on a backend's retrieval metrics against torch float32


@pytest.fixture(scope="session")
def exports_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("encoder-exports")


@pytest.fixture(scope="module")
def reranker_path(minilm_path, tmp_path_factory) -> Path:
    """An untrained score head on MiniLM: arbitrary but fixed scores, as a backend must keep."""
    return build_cross_encoder(minilm_path, tmp_path_factory.mktemp("ce") / "model", seed=3)


def judged_queries(db) -> list[EvalQuery]:
    """The sample tickets in three forms each, with the chunks of their expected articles."""
    return [
        EvalQuery(ref, ticket.query_text(), frozenset(gold_chunks(db, articles)))
        for ref, ticket, articles in sample_tickets(3)
    ]


def openvino(exports_dir: Path) -> encoders.BackendSettings:
    return encoders.BackendSettings("openvino", exports_dir)


def role(model: str) -> str:
    """ "trained retriever r5-2026…" → "trained retriever"."""
    return " ".join(model.split()[:2])


def worst_inversion(torch_scores: list[float]) -> float:
    """How far torch's scores, read in another backend's order, rise against that order."""
    worst, lowest = 0.0, float("inf")
    for score in torch_scores:
        worst, lowest = max(worst, score - lowest), min(lowest, score)
    return worst


def test_the_evaluator_on_an_exported_backend_ranks_as_torch_does(
    kb_db, minilm_path, reranker_path, exports_dir
):
    """ONNX Runtime runs float32: torch's metrics within the issue's 0.005 (the retriever
    alone: its reranker scores are checked by rag's tests, and cost a minute here on a busy
    machine). OpenVINO runs at the CPU's default precision (bfloat16 here): its vectors agree
    to cosine 0.99997, and the rankings differ only where torch's own cosines are closer than
    that difference can move them; on 36 tickets one judged chunk swapped at such a near-tie
    moves precision@5 by 1/180 (measured: 0.5833 → 0.5889), so there the bound is 0.005 plus
    that one swap, with the reranker too."""
    chunks, queries = corpus(kb_db), judged_queries(kb_db)
    assert len(queries) == 36 and all(q.relevant for q in queries)
    on_torch = RetrieverEvaluator(chunks, queries)
    ranking = {"reranker_path": reranker_path, "rerank_k": 10}
    torch_metrics = [on_torch.evaluate(minilm_path).metrics]
    torch_metrics.append(on_torch.evaluate(minilm_path, **ranking).metrics)
    for backend, runs in (("onnx", ({},)), ("openvino", ({}, ranking))):
        settings = encoders.BackendSettings(backend, exports_dir)
        exported = RetrieverEvaluator(chunks, queries, backend=settings)
        assert exported.backend_of(minilm_path) == backend
        one_swap = 1 / (len(queries) * 5) if backend == "openvino" else 0.0
        for kwargs, before in zip(runs, torch_metrics, strict=False):
            after = exported.evaluate(minilm_path, **kwargs).metrics
            assert before.keys() == after.keys()
            for name, value in before.items():
                bound = TOLERANCE + one_swap
                assert after[name] == pytest.approx(value, abs=bound), (backend, kwargs, name)
        check_near_ties(on_torch, exported, minilm_path)
        # the work is logged on the backend that did it
        done = {(e.what, e.backend): e.texts for e in exported.log.entries.values()}
        assert done == {
            ("chunks", backend): len(chunks),
            ("queries", backend): len(queries),
            **({("pairs", backend): 10 * len(queries)} if len(runs) > 1 else {}),
        }
        assert all(e.seconds > 0 for e in exported.log.entries.values())
    assert {e.backend for e in on_torch.log.entries.values()} == {"torch"}


def check_near_ties(on_torch: RetrieverEvaluator, exported: RetrieverEvaluator, model) -> None:
    """The vectors are interchangeable, and any reordering is a near-tie: a score moves by at
    most the query's and the chunk's vector differences (Cauchy-Schwarz), so two chunks swap
    only when torch scores them closer than twice that."""
    torch_chunks, torch_queries = on_torch.vectors(model)
    chunk_vectors, query_vectors = exported.vectors(model)
    assert float((torch_chunks * chunk_vectors).sum(axis=1).min()) > encoders.AGREEMENT
    assert float((torch_queries * query_vectors).sum(axis=1).min()) > encoders.AGREEMENT
    moved = float(np.linalg.norm(torch_chunks - chunk_vectors, axis=1).max())
    moved += float(np.linalg.norm(torch_queries - query_vectors, axis=1).max())
    position = {chunk_id: i for i, chunk_id in enumerate(on_torch.chunk_ids)}
    for n, (query, hits) in enumerate(exported.retrieve(model).items()):
        scores = [float(torch_queries[n] @ torch_chunks[position[c]]) for c, _ in hits[:20]]
        assert worst_inversion(scores) <= 2 * moved, query


def test_a_derived_model_takes_its_bases_backend_and_a_missing_export_falls_back_to_torch(
    kb_db, minilm_path, exports_dir, tmp_path, caplog
):
    derived = Path(shutil.copytree(minilm_path, tmp_path / "retriever" / "r1-derived"))
    chunks, queries = corpus(kb_db), judged_queries(kb_db)
    auto = encoders.BackendSettings("auto", exports_dir)
    evaluator = RetrieverEvaluator(chunks, queries, backend=auto)
    choice = evaluator.prepare(derived, prefer=["openvino"])
    assert choice is not None and choice.backend == "openvino"
    # tried on its base's backend first, and kept without timing every other backend
    assert [t.backend for t in choice.trials] == ["torch", "openvino"]
    assert choice.note == "the backend of the model it was trained from"
    assert evaluator.backend_of(derived) == "openvino"
    on_openvino = evaluator.evaluate(derived).metrics

    # the graph goes missing (a disk cleaned up by hand): evaluating the model again neither
    # fails nor moves the metrics; it runs on torch, with a warning, unless prepare rebuilt it
    [graph] = [p for p in exports_dir.glob("*/openvino") if p.parent.name.startswith("r1")]
    shutil.rmtree(graph)
    caplog.set_level("WARNING", logger="rag.encoders")
    # as a process started later reads it (other threads: this process's loaded models are
    # keyed by their settings, and the one in memory would still run)
    later = encoders.BackendSettings("auto", exports_dir, threads=1)
    again = RetrieverEvaluator(chunks, queries, backend=later)
    on_torch = again.evaluate(derived).metrics
    ran = again.backend_of(derived)
    assert {e.backend for e in again.log.entries.values()} == {ran}
    assert ran == "openvino" or (ran == "torch" and "torch float32 serves" in caplog.text)
    one_swap = 1 / (len(queries) * 5)  # as on the base model: bfloat16 moves near-ties
    for name, value in on_openvino.items():
        assert on_torch[name] == pytest.approx(value, abs=TOLERANCE + one_swap), name


def test_a_cycle_exports_what_it_trains_and_records_how_fast_it_encoded(annotated, exports_dir):  # noqa: F811
    base, db, _ = annotated
    settings = base.model_copy(
        update={
            "gate_margin": -1.0,
            "gate_tolerance": 1.0,
            "flywheel_max_examples": 30,
            "encoder_backend": "auto",
            "encoder_exports_dir": exports_dir,
        }
    )
    live = factory.embedding_versions(settings, db).prepare_live()
    assert live is not None and live.backend != "torch", "a faster backend agrees on this CPU"
    report = Flywheel(settings, db).run("test")
    assert report.status == "succeeded", report.error
    figures = report.counts["encoders"]
    assert figures["setting"] == "auto"

    # each trained model was exported before the gate read it, on its base's backend first
    prepared = {role(m["model"]): m for m in figures["models"]}
    assert prepared["live retriever"]["prepared"] == live.backend
    for kind in ("retriever", "reranker"):
        trained = prepared[f"trained {kind}"]
        assert trained["prepared"] == live.backend, trained
        assert "the backend of the model it was trained from" in trained["summary"]

    # the evaluation's encoding is on the record, on the backend, with its speed
    work = {(w["step"], role(w["model"]), w["what"]): w for w in figures["work"]}
    chunks = len(corpus(db))
    trained_chunks = work[("evaluation", "trained retriever", "chunks")]
    assert trained_chunks["texts"] == chunks and trained_chunks["backend"] == live.backend
    assert trained_chunks["per_s"] == pytest.approx(chunks / trained_chunks["seconds"], rel=0.01)
    assert ("evaluation", "live retriever", "chunks") not in work, "its index was read"
    assert work[("evaluation", "trained reranker", "pairs")]["backend"] == live.backend
    assert {w["step"] for w in figures["work"]} >= {"evaluation", "mining"}
    # the promoted retriever's index reused the evaluation's vectors, written on the backend
    reembed = figures["reembed"]
    assert reembed["vectors"] == reembed["from_evaluation"] == chunks
    assert reembed["backends"] == [live.backend] and reembed["seconds"] > 0
    champions = {
        r.kind: r for r in Flywheel(settings, db).registry.list() if r.status == "champion"
    }
    assert_index_matches_model(db, champions["retriever"])

    # the next drafts run the promoted models on the backend, without exporting anything
    pipeline = LivePipeline(settings, db)()
    assert champions["reranker"].path in pipeline.reranker.name
    assert pipeline.reranker.model.backend == live.backend
    assert factory.embedding_versions(settings, db).live()[1].backend == live.backend

    # the record, and the line `aitl flywheel runs` shows an admin
    with db.connection() as conn:
        (run,) = store.runs(conn, 1)
    assert run.counts["encoders"] == figures
    line = encoders_line(run.counts)
    said = f"evaluation encoded {chunks:,} chunks and "
    assert line.startswith("encoders (auto): ") and said in line
    assert f"on {live.backend} (" in line and "/s)" in line
    assert f"the new index took {reembed['seconds']:.1f} s for {chunks:,} vectors" in line
    assert said in flywheel_runs(settings)


def test_exports_that_cannot_be_written_leave_the_cycle_on_torch(annotated, tmp_path):  # noqa: F811
    base, db, _ = annotated
    blocked = tmp_path / "exports-is-a-file"
    blocked.write_text("not a folder\n")
    settings = base.model_copy(
        update={
            "gate_margin": 1.0,  # refused: what matters is that it was evaluated at all
            "flywheel_max_examples": 30,
            "encoder_backend": "openvino",
            "encoder_exports_dir": blocked,
        }
    )
    report = Flywheel(settings, db).run("test")
    assert report.status == "succeeded", report.error
    figures = report.counts["encoders"]
    assert figures["setting"] == "openvino" and figures["work"]
    assert {w["backend"] for w in figures["work"]} == {"torch"}
    assert all(not d["promoted"] for k, d in report.decisions.items() if k != "generator")
