"""How close a drafted reply is to the reply an agent wrote or sent, and how much of it the
cited passages support: the generator's offline check where references exist, and the
generator benchmark's scores.

ROUGE-L comes from ``rouge-score`` (Google's reference implementation); the semantic score
is the cosine of the two replies under the shipped MiniLM. Faithfulness is lexical on
purpose: a sentence counts as supported when most of its content words occur in the
passages, which is what an invented fact fails.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.extractive import content_words, readable_lines, sentences

SUPPORTED = 0.7  # share of a sentence's content words found in the passages


@dataclass(frozen=True)
class ReplyScores:
    """Mean scores of one generator's replies on a set of tickets."""

    replies: int
    rouge_l: float | None
    semantic: float | None
    faithfulness: float | None

    def as_metrics(self) -> dict[str, float | int | None]:
        return {
            "replies": self.replies,
            "rouge_l": _round(self.rouge_l),
            "semantic": _round(self.semantic),
            "faithfulness": _round(self.faithfulness),
        }


def rouge_l(reply: str, reference: str) -> float:
    """ROUGE-L F1 with stemming."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(reference, reply)["rougeL"].fmeasure)


def faithfulness(
    reply: str, passages: Sequence[str], boilerplate: Sequence[str] = ()
) -> float | None:
    """Share of the reply's sentences that the passages support; greeting and closing lines
    (``boilerplate``) are not claims and are left out. None when nothing is left to check."""
    source = set().union(*(content_words(p) for p in passages)) if passages else set()
    skip = {_key(line) for text in boilerplate for line in text.splitlines() if line.strip()}
    claims = [
        unit
        for line in readable_lines(reply)
        if _key(line) not in skip
        for unit in sentences(line)
        if content_words(unit)
    ]
    if not claims:
        return None
    supported = sum(
        len(content_words(u) & source) / len(content_words(u)) >= SUPPORTED for u in claims
    )
    return supported / len(claims)


def score(
    replies: Sequence[str],
    references: Sequence[str | None],
    passages: Sequence[Sequence[str]],
    encode: Callable[[list[str]], np.ndarray] | None = None,
    boilerplate: Sequence[str] = (),
) -> ReplyScores:
    """Mean ROUGE-L and semantic similarity over the replies that have a reference, and mean
    faithfulness over all replies."""
    pairs = [(r, ref) for r, ref in zip(replies, references, strict=True) if ref]
    rouge = [rouge_l(r, ref) for r, ref in pairs]
    semantic: list[float] = []
    if encode is not None and pairs:
        a = encode([r for r, _ in pairs])
        b = encode([ref for _, ref in pairs])
        semantic = [float(x) for x in np.sum(a * b, axis=1)]
    faithful = [
        f
        for r, p in zip(replies, passages, strict=True)
        if (f := faithfulness(r, p, boilerplate)) is not None
    ]
    return ReplyScores(len(replies), _mean(rouge), _mean(semantic), _mean(faithful))


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
