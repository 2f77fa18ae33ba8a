"""IR metrics on hand-computed runs, and exact search with the real MiniLM (plus a reranker)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flywheel import evaluation
from flywheel.evaluation import EvalQuery, RetrieverEvaluator, retrieval_metrics, to_run
from flywheel.exceptions import NotEnoughData
from rag.rerank import CrossEncoderReranker
from tests.support.chunks import make_chunk
from tests.support.tiny_models import build_cross_encoder

PAPER_ONLY = ("recall@75", "precision@8", "ndcg@10")  # reported beside the drafts' depths
QRELS = {
    "q1": {"a": 1, "b": 1},
    "q2": {"c": 1},
    "q3": {"d": 1},  # the run misses it: counts as zero
    "q4": {"e": 1},
    "q5": {"x": 0},  # nothing relevant: not judged, not counted
}
RUN = {
    "q1": {"a": 0.9, "x": 0.8, "b": 0.7},  # relevant at ranks 1 and 3
    "q2": {"y": 0.9, "z": 0.8, "c": 0.5},  # relevant at rank 3
    "q4": {**{f"n{i}": 1.0 - i / 100 for i in range(10)}, "e": 0.5},  # relevant at rank 11
    "q5": {"x": 0.3},
}


def test_metrics_match_hand_computed_values():
    result = retrieval_metrics(QRELS, RUN, retrieve_k=10, context_k=5)
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_q2 = 1 / math.log2(4)
    assert result.queries == 4
    assert result.primary == "recall@10"
    assert result.greater_is_better is True
    assert tuple(result.metrics) == ("recall@10", "precision@5", "ndcg@5", "mrr@10", *PAPER_ONLY)
    # at the drafts' depths: q4's chunk at rank 11 is past recall@10
    assert result.metrics["recall@10"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert result.metrics["precision@5"] == pytest.approx((2 / 5 + 1 / 5 + 0 + 0) / 4)
    assert result.metrics["ndcg@5"] == pytest.approx((ndcg_q1 + ndcg_q2) / 4)
    # the paper's
    assert result.metrics["recall@75"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert result.metrics["precision@8"] == pytest.approx((2 / 8 + 1 / 8 + 0 + 0) / 4)
    assert result.metrics["mrr@10"] == pytest.approx((1 + 1 / 3 + 0 + 0) / 4)
    assert result.metrics["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 4)
    assert result.score == result.metrics["recall@10"]


def test_the_depths_default_to_the_products():
    assert tuple(retrieval_metrics(QRELS, RUN).metrics)[:3] == (
        "recall@20",
        "precision@5",
        "ndcg@5",
    )


def test_primary_is_checked_and_an_unjudged_set_is_not_enough_data():
    assert retrieval_metrics(QRELS, RUN, primary="ndcg@10").primary == "ndcg@10"
    with pytest.raises(ValueError, match="recall@75"):
        retrieval_metrics(QRELS, RUN, primary="map")
    with pytest.raises(NotEnoughData):
        retrieval_metrics({"q5": {"x": 0}}, RUN)


def test_run_scores_follow_the_ranked_order():
    run = to_run({"q": [(7, 0.1), (3, 5.0), (9, 0.9)]})
    assert sorted(run["q"], key=lambda c: -run["q"][c]) == ["7", "3", "9"]


CHUNKS = [
    (11, "Reset your password\nTap Forgot password on the sign-in screen; the link lasts a day."),
    (12, "Shipping to Canada\nWe ship to Canada and Mexico within ten business days."),
    (13, "Gift cards\nGift cards can be used on any order and never expire."),
    (14, "Refunds\nRefunds reach your card within five business days of the return."),
    (15, "Two-factor authentication\nUse a backup code if you lost your phone."),
    (
        16,
        "Cancel a subscription\nCancel any time from Account > Plan; access lasts to renewal.",
    ),
]
QUERIES = [
    EvalQuery("t1", "I forgot my password and can't log in", frozenset({11})),
    EvalQuery("t2", "Do you deliver to Canada?", frozenset({12})),
    EvalQuery("t3", "When will I get my money back for the return?", frozenset({14})),
    EvalQuery("t4", "How do I stop my subscription?", frozenset({16})),
    EvalQuery("t5", "unjudged ticket", frozenset()),
]


@pytest.fixture(scope="module")
def random_reranker(minilm_path, tmp_path_factory) -> Path:
    """An untrained score head: its order is arbitrary, which is what shows reranking happened."""
    return build_cross_encoder(minilm_path, tmp_path_factory.mktemp("ce") / "model", seed=3)


@pytest.fixture
def counted_loads(monkeypatch) -> list[str]:
    loads: list[str] = []
    real = evaluation.load_encoder

    def load(path: str, *backend):
        loads.append(path)
        return real(path, *backend)

    monkeypatch.setattr(evaluation, "load_encoder", load)
    return loads


@pytest.mark.slow
def test_base_model_finds_the_known_answers_and_encodes_once(minilm_path, counted_loads):
    evaluator = RetrieverEvaluator(CHUNKS, QUERIES, k=4)
    result = evaluator.evaluate(minilm_path)
    assert result.queries == 4, "the unjudged ticket is not counted"
    assert result.metrics["recall@75"] == result.metrics["recall@20"] == 1.0
    assert result.metrics["mrr@10"] == 1.0
    assert result.metrics["precision@8"] == pytest.approx(1 / 8)
    assert result.metrics["precision@5"] == pytest.approx(1 / 5)
    ranked = evaluator.retrieve(minilm_path)
    assert all(len(hits) == 4 for hits in ranked.values()), "top k of six chunks"
    assert ranked["t2"][0][0] == 12
    assert evaluator.evaluate(str(minilm_path)) == result
    # mining searches other texts with the same model: it is not loaded again
    [hits] = evaluator.search(minilm_path, ["How do I reset my password?"], 2)
    assert len(hits) == 2
    assert counted_loads == [str(Path(minilm_path).resolve())], "chunks encoded once per model"


@pytest.mark.slow
def test_reranker_reorders_the_head_and_keeps_the_tail(minilm_path, random_reranker):
    from sentence_transformers import CrossEncoder

    evaluator = RetrieverEvaluator(CHUNKS, QUERIES)
    retrieved = evaluator.retrieve(minilm_path)
    reranked = evaluator.rerank(retrieved, random_reranker, rerank_k=3, cosine_weight=0.0)
    model = CrossEncoder(str(random_reranker), device="cpu", local_files_only=True)
    texts = dict(CHUNKS)
    for query in QUERIES:
        head = [c for c, _ in retrieved[query.query_id][:3]]
        scores = model.predict([(query.text, texts[c]) for c in head])
        expected = [c for _, c in sorted(zip(scores, head, strict=True), reverse=True)]
        assert [c for c, _ in reranked[query.query_id][:3]] == expected
        assert reranked[query.query_id][3:] == retrieved[query.query_id][3:]

    def order(ranked):
        return {q: [c for c, _ in hits] for q, hits in ranked.items()}

    assert order(reranked) != order(retrieved), "a random head reorders some query's head"

    plain = evaluator.evaluate(minilm_path)
    with_reranker = evaluator.evaluate(minilm_path, reranker_path=random_reranker, rerank_k=3)
    assert with_reranker.metrics["recall@75"] == plain.metrics["recall@75"] == 1.0


@pytest.mark.slow
def test_the_gate_reranks_exactly_as_the_product_does(minilm_path, random_reranker):
    """With the cosine blended in, the evaluator's head is the product reranker's order."""
    evaluator = RetrieverEvaluator(CHUNKS, QUERIES)
    retrieved = evaluator.retrieve(minilm_path)
    texts = dict(CHUNKS)
    for weight in (0.0, 1.0, 3.0):
        reranked = evaluator.rerank(retrieved, random_reranker, rerank_k=4, cosine_weight=weight)
        product = CrossEncoderReranker(str(random_reranker), cosine_weight=weight)
        for query in QUERIES:
            hits = retrieved[query.query_id][:4]
            chunks = [make_chunk(c, c, *texts[c].split("\n", 1), cosine) for c, cosine in hits]
            served = product.rerank(query.text, chunks)
            assert [c for c, _ in reranked[query.query_id][:4]] == [c.chunk_id for c in served]
            scores = [score for _, score in reranked[query.query_id][:4]]
            assert scores == pytest.approx([c.rerank_score for c in served], abs=1e-5)


@pytest.mark.slow
def test_search_finds_other_texts_as_retrieve_finds_the_judged_queries(minilm_path):
    evaluator = RetrieverEvaluator(CHUNKS, QUERIES, k=3)
    retrieved = evaluator.retrieve(minilm_path)
    found = evaluator.search(minilm_path, [q.text for q in QUERIES], 3)
    for query, hits in zip(QUERIES, found, strict=True):
        assert [c for c, _ in hits] == [c for c, _ in retrieved[query.query_id]]
        assert [s for _, s in hits] == pytest.approx([s for _, s in retrieved[query.query_id]])
    [[(first, cosine), *rest]] = evaluator.search(minilm_path, ["Can I ship to Mexico?"], 2)
    assert first == 12 and len(rest) == 1 and cosine > rest[0][1]
    assert evaluator.texts[12].startswith("Shipping to Canada")
