"""Hard negatives for the reranker from the retriever's top results."""

from __future__ import annotations

import pytest

from flywheel.evaluation import RetrieverEvaluator
from flywheel.examples import RerankExample
from flywheel.mining import mined_negatives

TEXTS = {n: f"chunk {n}" for n in range(1, 10)}
RANKED = {
    "password": [(3, 0.9), (1, 0.8), (7, 0.7), (4, 0.6), (9, 0.5)],
    "canada": [(2, 0.9), (5, 0.8), (6, 0.7), (8, 0.6)],
}


def example(query_id: str, chunk_id: int, label: float, weight: float = 1.0) -> RerankExample:
    return RerankExample(query_id, query_id, chunk_id, TEXTS[chunk_id], label, weight, (chunk_id,))


class Ranking:
    """A search over fixed rankings that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[list[str], int]] = []

    def __call__(self, queries, k):
        self.asked.append((list(queries), k))
        return [RANKED[q][:k] for q in queries]


def test_mined_negatives_are_the_best_ranked_chunks_no_one_labelled():
    examples = [
        example("password", 1, 1.0, weight=0.8),
        example("password", 7, 0.0, weight=1.3),
        example("canada", 5, 1.0),
        example("password", 3, 1.0, weight=0.8),
    ]
    search = Ranking()
    mined = mined_negatives(examples, search, TEXTS, per_ticket=2, depth=4)
    assert search.asked == [(["password", "canada"], 4)], "one search, each ticket once"
    assert [(m.query_id, m.chunk_id) for m in mined] == [
        ("password", 4),  # 3, 1 and 7 are labelled; 9 is past the depth
        ("canada", 2),
        ("canada", 6),
    ]
    assert all(m.label == 0.0 and m.event_ids == () for m in mined), "no click made them"
    assert [m.weight for m in mined] == [1.3, 1.0, 1.0], "the ticket's highest weight"
    assert [m.passage for m in mined] == ["chunk 4", "chunk 2", "chunk 6"]
    assert [m.query for m in mined] == ["password", "canada", "canada"]


def test_mining_stays_within_its_limit_and_spreads_it_over_the_tickets():
    examples = [example("password", 1, 1.0), example("canada", 5, 1.0)]
    everything = mined_negatives(examples, Ranking(), TEXTS, per_ticket=3, depth=5)
    assert [(m.query_id, m.chunk_id) for m in everything] == [
        ("password", 3),
        ("password", 7),
        ("password", 4),
        ("canada", 2),
        ("canada", 6),
        ("canada", 8),
    ]
    # a limit of 4 over two tickets: two each, the best-ranked ones
    four = mined_negatives(examples, Ranking(), TEXTS, per_ticket=3, depth=5, limit=4)
    assert [(m.query_id, m.chunk_id) for m in four] == [
        ("password", 3),
        ("password", 7),
        ("canada", 2),
        ("canada", 6),
    ]
    # fewer than one each: the first tickets get one, and the limit holds
    one = mined_negatives(examples, Ranking(), TEXTS, per_ticket=3, depth=5, limit=1)
    assert [(m.query_id, m.chunk_id) for m in one] == [("password", 3)]
    assert mined_negatives(examples, Ranking(), TEXTS, per_ticket=3, depth=5, limit=0) == []
    roomy = mined_negatives(examples, Ranking(), TEXTS, per_ticket=3, depth=5, limit=100)
    assert roomy == everything


def test_nothing_is_mined_when_switched_off_or_unknown():
    examples = [example("canada", 5, 1.0)]
    search = Ranking()
    assert mined_negatives(examples, search, TEXTS, per_ticket=0, depth=4) == []
    assert mined_negatives([], search, TEXTS, per_ticket=3, depth=4) == []
    assert search.asked == [], "no search when nothing is wanted"
    # a chunk without text (deleted since) cannot be trained on
    only = mined_negatives(examples, search, {5: "chunk 5", 6: "chunk 6"}, per_ticket=3, depth=4)
    assert [m.chunk_id for m in only] == [6]


@pytest.mark.slow
def test_mining_with_the_real_evaluator_skips_the_known_answer(minilm_path):
    chunks = [
        (11, "Reset your password\nUse Forgot password on the sign-in page."),
        (12, "Shipping to Canada\nWe ship to Canada and Mexico within ten business days."),
        (13, "Two-factor authentication\nUse a backup code if you lost your phone."),
        (14, "Account email\nReset emails go to the address on your account."),
    ]
    evaluator = RetrieverEvaluator(chunks, [])
    query = "I forgot my password and the reset email never came"
    examples = [RerankExample("t1", query, 11, chunks[0][1], 1.0)]
    search = lambda texts, k: evaluator.search(minilm_path, texts, k)  # noqa: E731
    [top] = evaluator.search(minilm_path, [query], 4)
    mined = mined_negatives(examples, search, evaluator.texts, per_ticket=2, depth=4)
    expected = [c for c, _ in top if c != 11][:2]
    assert [m.chunk_id for m in mined] == expected
    assert 12 not in expected, "shipping is the least like a password question"
