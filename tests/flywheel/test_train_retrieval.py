"""Retriever and reranker trainers: weighting, data layout, and real MiniLM fine-tunes on CPU.

The synthetic FAQ crosses products with issues, so a held-out (product, issue) cell can only be
answered by matching both, which the base model does imperfectly and a fine-tune learns.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flywheel.evaluation import EvalQuery, RetrieverEvaluator
from flywheel.examples import RerankExample, RetrievalExample, TrainedModel
from flywheel.exceptions import NotEnoughData
from flywheel.train_retrieval import (
    RerankerTraining,
    RetrieverTraining,
    rerank_rows,
    retrieval_rows,
    train_reranker,
    train_retriever,
)
from flywheel.weighting import copies
from rag.rerank import CrossEncoderReranker
from tests.support.chunks import make_chunk

PRODUCTS = [
    "Aurora router",
    "Nimbus thermostat",
    "Beacon doorbell",
    "Pulse smart plug",
    "Orbit camera",
    "Echo speaker",
    "Tempo watch",
    "Atlas scale",
]
ISSUES = [
    ("won't turn on after charging", "hold the power button for ten seconds, then charge it"),
    ("how do I reset it to factory settings", "press the pinhole button until the light blinks"),
    ("the firmware update keeps failing", "keep it near the hub and retry the update in the app"),
    ("can't connect it to my wifi", "switch your network to 2.4 GHz and re-run pairing"),
    ("I want a refund", "request a refund within 30 days from Orders; it reaches your card"),
    ("the battery drains too fast", "turn off always-on mode and lower the report interval"),
    ("how do I add a second user", "invite them from Household > Members by email"),
    ("the app says device offline", "power-cycle it and check that the hub light is green"),
]


def question(p: int, i: int) -> str:
    return f"My {PRODUCTS[p]}: {ISSUES[i][0]}?"


def answer(p: int, i: int) -> str:
    """As ``rag.chunking.embedding_text`` lays a chunk out: title, newline, text."""
    return f"{PRODUCTS[p]}\nTo fix this on the {PRODUCTS[p]}, {ISSUES[i][1]}."


def chunk_id(p: int, i: int) -> int:
    return p * len(ISSUES) + i


CELLS = [(p, i) for p in range(len(PRODUCTS)) for i in range(len(ISSUES))]
HELD_OUT = [(p, i) for p, i in CELLS if (p + i) % 4 == 0]
TRAIN = [(p, i) for p, i in CELLS if (p + i) % 4 != 0]


def retrieval_examples() -> list[RetrievalExample]:
    """Each training cell with two hard negatives: same product other issue, and vice versa."""
    return [
        RetrievalExample(
            query_id=f"q{p}-{i}",
            query=question(p, i),
            positive_id=chunk_id(p, i),
            positive=answer(p, i),
            negatives=(answer(p, (i + 1) % 8), answer((p + 1) % 8, i)),
        )
        for p, i in TRAIN
    ]


def rerank_examples() -> list[RerankExample]:
    """64 labelled pairs: 32 training cells, each with its answer and an unrelated one."""
    examples = []
    for n, (p, i) in enumerate(TRAIN[:32]):
        other = ((p + 3) % 8, (i + 3) % 8) if n % 2 else ((p + 5) % 8, (i + 2) % 8)
        examples.append(RerankExample(f"q{p}-{i}", question(p, i), chunk_id(p, i), answer(p, i), 1))
        examples.append(
            RerankExample(f"q{p}-{i}", question(p, i), chunk_id(*other), answer(*other), 0)
        )
    return examples


def held_out_evaluator() -> RetrieverEvaluator:
    chunks = [(chunk_id(p, i), answer(p, i)) for p, i in CELLS]
    queries = [
        EvalQuery(f"h{p}-{i}", question(p, i), frozenset({chunk_id(p, i)})) for p, i in HELD_OUT
    ]
    return RetrieverEvaluator(chunks, queries)


def pairwise_accuracy(model_dir: Path | str) -> float:
    """How often a held-out question scores its answer above an unrelated one."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), num_labels=1, device="cpu", local_files_only=True)
    positives = model.predict([(question(p, i), answer(p, i)) for p, i in HELD_OUT])
    negatives = np.stack(
        [
            model.predict(
                [(question(p, i), answer((p + 1) % 8, (i + 1) % 8)) for p, i in HELD_OUT]
            ),
            model.predict(
                [(question(p, i), answer((p + 2) % 8, (i + 5) % 8)) for p, i in HELD_OUT]
            ),
        ],
        axis=1,
    )
    return float((positives[:, None] > negatives).mean())


def training_margin(model_dir: Path | str, examples: list[RetrievalExample]) -> float:
    """Mean cosine of each query to its positive minus to its closest hard negative."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    queries = encode([e.query for e in examples])
    positives = encode([e.positive for e in examples])
    negatives = np.stack([encode([e.negatives[j] for e in examples]) for j in range(2)], axis=1)
    positive = (queries * positives).sum(axis=1)
    negative = np.einsum("qd,qnd->qn", queries, negatives).max(axis=1)
    return float((positive - negative).mean())


# -- weighting and data layout (no model) ---------------------------------------------------


def test_weights_are_relative_and_decide_how_often_an_example_is_seen():
    assert copies([1.44, 1.44, 1.44], seed=0) == [1, 1, 1], "equal weights: once, any scale"
    assert copies([-1.0, 0.0, float("nan"), 2.0], seed=0) == [0, 0, 0, 1]
    assert copies([30.0] + [1.0] * 99, seed=0, cap=3)[0] == 3, "capped"
    # an agent the judge trusts three times as much as another: about three times the copies
    counts = copies([1.5] * 400 + [0.5] * 400, seed=7, cap=3)
    trusted, doubted = sum(counts[:400]), sum(counts[400:])
    assert 2.6 < trusted / doubted < 3.4
    assert 740 < trusted + doubted < 860, "the data set keeps about its size"
    assert copies([1.5] * 400 + [0.5] * 400, seed=7, cap=3) == counts, "seeded"


def example(n: int, negatives: tuple[str, ...] = (), weight: float = 1.0) -> RetrievalExample:
    return RetrievalExample(f"q{n}", f"query {n}", n, f"chunk {n}", negatives, weight)


def test_retrieval_rows_repeat_weighted_examples_and_fill_negatives():
    examples = [
        example(1, ("bad 1a", "bad 1b", "bad 1c"), weight=2.0),
        example(2, ("bad 2a",), weight=0.5),
        example(3, weight=0.5),
    ]  # relative weights 2, 0.5, 0.5
    rows = retrieval_rows(examples, hard_negatives=2, seed=0)
    assert list(rows) == ["anchor", "positive", "negative_1", "negative_2"]
    assert rows["anchor"][:2] == ["query 1", "query 1"]
    assert rows["negative_1"][:2] == ["bad 1a", "bad 1a"]
    assert rows["negative_2"][:2] == ["bad 1b", "bad 1b"], "own negatives cycle"
    for n in (2, 3):
        assert rows["anchor"].count(f"query {n}") <= 1
    for i, anchor in enumerate(rows["anchor"]):
        if anchor == "query 2":
            assert rows["negative_1"][i] == rows["negative_2"][i] == "bad 2a"
        if anchor == "query 3":  # no negatives of its own: borrowed, never its own chunk
            borrowed = {rows["negative_1"][i], rows["negative_2"][i]}
            assert borrowed <= {"chunk 1", "chunk 2", "bad 1a", "bad 1b", "bad 1c", "bad 2a"}
    assert retrieval_rows(examples, hard_negatives=2, seed=0) == rows, "seeded"
    equal = retrieval_rows([replace(e, weight=1.0) for e in examples], hard_negatives=2, seed=0)
    assert equal["anchor"] == ["query 1", "query 2", "query 3"]


def test_retrieval_rows_without_negatives_are_pairs():
    rows = retrieval_rows([example(1), example(2)], hard_negatives=1, seed=0)
    assert rows == {"anchor": ["query 1", "query 2"], "positive": ["chunk 1", "chunk 2"]}
    rows = retrieval_rows([example(1, ("bad",)), example(2)], hard_negatives=0, seed=0)
    assert list(rows) == ["anchor", "positive"]


def test_rerank_rows_clamp_labels_and_repeat():
    examples = [
        RerankExample("q1", "query", 1, "chunk 1", 1.4, weight=3.0),
        RerankExample("q1", "query", 2, "chunk 2", -0.2, weight=3.0),
    ]
    rows = rerank_rows(examples, seed=0)
    assert rows["label"] == [1.0, 0.0] and rows["passage"] == ["chunk 1", "chunk 2"]
    heavy = RerankExample("q1", "query", 3, "chunk 3", 1.0, weight=12.0)
    rows = rerank_rows([*examples, heavy], seed=0)  # relative weight 2 (mean 6)
    assert rows["passage"].count("chunk 3") == 2


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_examples_is_not_enough_data(tmp_path, count):
    retrieval = [example(n) for n in range(count)]
    rerank = [RerankExample(f"q{n}", "query", n, "chunk", 1.0) for n in range(count)]
    with pytest.raises(NotEnoughData, match="at least 2"):
        train_retriever("/nonexistent", retrieval, tmp_path / "r")
    with pytest.raises(NotEnoughData, match="at least 2"):
        train_reranker("/nonexistent", rerank, tmp_path / "c")


def test_zero_weight_and_empty_examples_do_not_count(tmp_path):
    examples = [example(1, weight=0.0), example(2, weight=-1.0), example(3), example(4, weight=0)]
    examples.append(RetrievalExample("q5", "  ", 5, "chunk 5"))
    with pytest.raises(NotEnoughData, match="got 1 of 5"):
        train_retriever("/nonexistent", examples, tmp_path / "r")


# -- real fine-tunes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_retriever(minilm_path, tmp_path_factory) -> TrainedModel:
    config = RetrieverTraining(batch_size=16, learning_rate=1e-4, hard_negatives=2)
    out = tmp_path_factory.mktemp("retriever") / "model"
    return train_retriever(minilm_path, retrieval_examples(), out, config)


@pytest.fixture(scope="module")
def trained_reranker(minilm_path, tmp_path_factory) -> TrainedModel:
    config = RerankerTraining(epochs=2, batch_size=16, learning_rate=3e-4, seed=42)
    out = tmp_path_factory.mktemp("reranker") / "model"
    return train_reranker(minilm_path, rerank_examples(), out, config)


@pytest.mark.slow
def test_retriever_training_reports_what_it_did(trained_retriever):
    assert trained_retriever.kind == "retriever"
    assert trained_retriever.examples == len(TRAIN)
    assert trained_retriever.steps == 3  # 48 rows / batch 16, one epoch
    assert trained_retriever.train_loss is not None and trained_retriever.train_loss > 0
    assert trained_retriever.seconds > 0
    assert (Path(trained_retriever.path) / "modules.json").is_file()
    assert not (Path(trained_retriever.path) / "README.md").exists(), "no tickets in a card"


@pytest.mark.slow
def test_retriever_training_widens_the_margin_and_ranks_held_out_better(
    minilm_path, trained_retriever
):
    examples = retrieval_examples()
    before = training_margin(minilm_path, examples)
    after = training_margin(trained_retriever.path, examples)
    assert after > before + 0.03, (before, after)

    evaluator = held_out_evaluator()
    base = evaluator.evaluate(minilm_path).metrics
    tuned = evaluator.evaluate(trained_retriever.path).metrics
    assert tuned["mrr@10"] > base["mrr@10"] + 0.05, (base, tuned)
    assert tuned["ndcg@10"] > base["ndcg@10"]


@pytest.mark.slow
def test_reranker_training_separates_held_out_pairs_better(minilm_path, trained_reranker):
    from transformers import set_seed

    set_seed(42)  # the untrained model then has the very head training started from
    before = pairwise_accuracy(minilm_path)
    after = pairwise_accuracy(trained_reranker.path)
    assert trained_reranker.kind == "reranker"
    assert trained_reranker.examples == 64
    assert trained_reranker.steps == 8
    assert after >= before + 0.15, (before, after)


@pytest.mark.slow
def test_product_reranker_loads_the_trained_folder(trained_reranker):
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(trained_reranker.path)
    p, i = HELD_OUT[0]
    chunks = [
        make_chunk(n, n, *answer(*cell).split("\n", 1))
        for n, cell in enumerate([((p + 1) % 8, (i + 1) % 8), (p, i), ((p + 2) % 8, (i + 5) % 8)])
    ]
    ranked = reranker.rerank(question(p, i), chunks)
    model = CrossEncoder(trained_reranker.path, device="cpu", local_files_only=True)
    expected = model.predict([(question(p, i), f"{c.title}\n{c.text}") for c in chunks])
    assert [c.chunk_id for c in ranked] == list(np.argsort(-expected))
    # equal cosines: the blend is the cross-encoder's scores, z-scored over the candidates
    standard = (expected - expected.mean()) / expected.std()
    assert [c.rerank_score for c in ranked] == pytest.approx(
        sorted(standard, reverse=True), abs=1e-5
    )


@pytest.mark.slow
def test_reranker_continues_from_a_trained_cross_encoder(trained_reranker, tmp_path):
    from sentence_transformers import CrossEncoder

    config = RerankerTraining(max_steps=1, learning_rate=1e-9, batch_size=4)
    result = train_reranker(trained_reranker.path, rerank_examples()[:4], tmp_path / "m", config)
    assert result.steps == 1
    pairs = [(question(p, i), answer(p, i)) for p, i in HELD_OUT]
    champion = CrossEncoder(trained_reranker.path, device="cpu", local_files_only=True)
    continued = CrossEncoder(result.path, device="cpu", local_files_only=True)
    assert continued.predict(pairs) == pytest.approx(champion.predict(pairs), abs=1e-3), (
        "the champion's score head is kept, not replaced by a fresh one"
    )
