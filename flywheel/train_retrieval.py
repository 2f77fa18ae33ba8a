"""Trainers of the two retrieval stages: the bi-encoder retriever and the cross-encoder reranker.

Both fine-tune a local model on CPU from judged examples and save a folder the product loads
exactly as it loads the shipped one (``SentenceTransformer``/``CrossEncoder`` with
``local_files_only=True``).

Neither loss takes a per-sample weight, so an example's reliability weight decides how often
it is seen (``flywheel.weighting``: relative to the mean weight, at most ``MAX_REPEATS`` copies
so one confident click cannot dominate a small set). The retriever's no-duplicates sampler
keeps repeats apart.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flywheel.examples import RerankExample, RetrievalExample, TrainedModel
from flywheel.exceptions import NotEnoughData
from flywheel.weighting import copies

MIN_EXAMPLES = 2
MAX_REPEATS = 3

Example = TypeVar("Example", RetrievalExample, RerankExample)


@dataclass(frozen=True)
class RetrieverTraining:
    """Settings of a retriever fine-tune (MultipleNegativesRankingLoss with hard negatives)."""

    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_steps: int = -1  # > 0 overrides epochs
    hard_negatives: int = 1  # judged-irrelevant chunks per example, beside in-batch negatives
    max_seq_length: int | None = None  # tokens per text; None keeps the model's own
    seed: int = 42


@dataclass(frozen=True)
class RerankerTraining:
    """Settings of a reranker fine-tune (binary cross-entropy on labelled pairs).

    The learning rate is higher than the retriever's: started from MiniLM, the score head is
    new and learns from a few hundred steps a week (2e-5 left the loss near chance).
    """

    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_steps: int = -1  # > 0 overrides epochs
    max_seq_length: int | None = None  # tokens per (query, passage) pair
    seed: int = 42


def usable(examples: Sequence[Example], kind: str, has_text: Callable[[Example], bool]) -> list:
    """The examples worth training on, or NotEnoughData when fewer than two remain."""
    kept = [e for e in examples if e.weight > 0 and has_text(e)]
    if len(kept) < MIN_EXAMPLES:
        raise NotEnoughData(
            f"training the {kind} needs at least {MIN_EXAMPLES} examples with text and a "
            f"positive weight; got {len(kept)} of {len(examples)}"
        )
    return kept


def train_retriever(
    base_model: str | Path,
    examples: Sequence[RetrievalExample],
    out_dir: Path,
    config: RetrieverTraining = RetrieverTraining(),
) -> TrainedModel:
    """Fine-tune the embedding model so tickets land next to the chunks agents used for them."""
    kept = usable(examples, "retriever", lambda e: bool(e.query.strip() and e.positive.strip()))
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses

    started = time.perf_counter()
    _seed(config.seed)
    model = SentenceTransformer(str(base_model), device="cpu", local_files_only=True)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    dataset = _dataset(retrieval_rows(kept, config.hard_negatives, config.seed))
    with tempfile.TemporaryDirectory(prefix="aitl-retriever-") as scratch:
        trainer = SentenceTransformerTrainer(
            model=model,
            args=_retriever_arguments(config, scratch),
            train_dataset=dataset,
            loss=losses.MultipleNegativesRankingLoss(model),
        )
        output = trainer.train()
    return _finish("retriever", model, out_dir, len(kept), output, started)


def train_reranker(
    base_model: str | Path,
    examples: Sequence[RerankExample],
    out_dir: Path,
    config: RerankerTraining = RerankerTraining(),
) -> TrainedModel:
    """Fine-tune a cross-encoder; from a previous reranker it continues, from MiniLM it starts.

    A plain embedding folder gets a fresh one-label score head (seeded); a cross-encoder folder
    keeps its head, so a champion is trained further rather than reset.
    """
    kept = usable(examples, "reranker", lambda e: bool(e.query.strip() and e.passage.strip()))
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, losses

    started = time.perf_counter()
    _seed(config.seed)
    model = CrossEncoder(
        str(base_model),
        num_labels=1,
        device="cpu",
        local_files_only=True,
        max_length=config.max_seq_length,
    )
    dataset = _dataset(rerank_rows(kept, config.seed))
    with tempfile.TemporaryDirectory(prefix="aitl-reranker-") as scratch:
        trainer = CrossEncoderTrainer(
            model=model,
            args=_reranker_arguments(config, scratch),
            train_dataset=dataset,
            loss=losses.BinaryCrossEntropyLoss(model),
        )
        output = trainer.train()
    return _finish("reranker", model, out_dir, len(kept), output, started)


def retrieval_rows(
    examples: Sequence[RetrievalExample], hard_negatives: int, seed: int
) -> dict[str, list[str]]:
    """Columns anchor, positive, negative_1..n, each example as often as its weight says.

    Every row needs the same number of negatives. An example with fewer than n judged negatives
    cycles its own; one with none borrows other examples' chunks (what in-batch negatives would
    show it anyway). Only if nothing can be borrowed are the negative columns dropped for all.
    """
    count = min(hard_negatives, max(len(e.negatives) for e in examples))
    negatives = _fill_negatives(examples, count, random.Random(seed)) if count > 0 else None
    if negatives is None:
        count, negatives = 0, [() for _ in examples]
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    columns.update({f"negative_{i + 1}": [] for i in range(count)})
    counts = copies([e.weight for e in examples], seed, MAX_REPEATS)
    for example, chosen, times in zip(examples, negatives, counts, strict=True):
        for _ in range(times):
            columns["anchor"].append(example.query)
            columns["positive"].append(example.positive)
            for i, text in enumerate(chosen):
                columns[f"negative_{i + 1}"].append(text)
    return columns


def _fill_negatives(
    examples: Sequence[RetrievalExample], count: int, rng: random.Random
) -> list[tuple[str, ...]] | None:
    """``count`` negatives per example, or None when some example cannot get any."""
    filled = []
    for example in examples:
        pool = list(example.negatives[:count]) or _borrowable(example, examples)
        if not pool:
            return None
        if not example.negatives:
            pool = rng.sample(pool, min(count, len(pool)))
        filled.append(tuple(pool[i % len(pool)] for i in range(count)))
    return filled


def _borrowable(example: RetrievalExample, examples: Sequence[RetrievalExample]) -> list[str]:
    """Other examples' chunks that are not this example's positive, in a stable order."""
    texts = [e.positive for e in examples if e.positive_id != example.positive_id]
    texts += [n for e in examples for n in e.negatives]
    return sorted({t for t in texts if t != example.positive})


def rerank_rows(examples: Sequence[RerankExample], seed: int) -> dict[str, list[Any]]:
    """Columns query, passage, label (clamped to [0, 1]), each example as often as its weight
    says."""
    columns: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    counts = copies([e.weight for e in examples], seed, MAX_REPEATS)
    for example, times in zip(examples, counts, strict=True):
        for _ in range(times):
            columns["query"].append(example.query)
            columns["passage"].append(example.passage)
            columns["label"].append(min(1.0, max(0.0, float(example.label))))
    return columns


def _retriever_arguments(config: RetrieverTraining, scratch: str):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        **_common_arguments(config, scratch),
        # the same chunk twice in a batch would be scored as its own negative
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )


def _reranker_arguments(config: RerankerTraining, scratch: str):
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    return CrossEncoderTrainingArguments(**_common_arguments(config, scratch))


def _common_arguments(config: RetrieverTraining | RerankerTraining, scratch: str) -> dict:
    """CPU, seeded, silent, and nothing written during training: only the final folder counts."""
    return {
        "output_dir": scratch,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a ratio in transformers 5
        "seed": config.seed,
        "data_seed": config.seed,
        "use_cpu": True,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
    }


def _dataset(columns: dict[str, list[Any]]):
    from datasets import Dataset

    return Dataset.from_dict(columns)


def _seed(seed: int) -> None:
    """Seeds python, numpy and torch before the model loads, since a new score head is random."""
    from transformers import set_seed

    set_seed(seed)


def _finish(
    kind: str, model: Any, out_dir: Path, examples: int, output: Any, started: float
) -> TrainedModel:
    # no model card: it would copy sample tickets from the training set into README.md
    model.save(str(out_dir), create_model_card=False)
    loss = output.training_loss
    return TrainedModel(
        kind=kind,
        path=str(out_dir),
        examples=examples,
        steps=int(output.global_step),
        train_loss=float(loss) if loss is not None and math.isfinite(loss) else None,
        seconds=time.perf_counter() - started,
    )
