"""Encoders benchmark: each inference backend's speed, agreement with torch float32 and
retrieval quality on the flywheel benchmark's held-out tickets, for the embedder and reranker.

Run ``.venv/bin/python benchmarks/encoders.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# benchmarks/flywheel.py is named like the product's ``flywheel`` package, and Python puts the
# script's folder first on the import path: the project root goes in front of it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import json
import logging
import platform
import random
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.panel import Panel
from rich.table import Table

from aitl.core.settings import Settings
from benchmarks import flywheel as flywheel_bench
from benchmarks import kb_pipeline, layouts
from flywheel.evaluation import retrieval_metrics, to_run
from rag import encoders, factory
from rag.chunking import Chunker, embedding_text
from rag.rerank import blend
from rag.store import ChunkRef

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS = RESULTS_DIR / "encoders.json"
SEED = flywheel_bench.SEED
ROWS = (*encoders.BACKENDS, "auto")  # what AITL_ENCODER_BACKEND may say
REFERENCE = "torch"  # torch float32: every other row is compared with it
DEFAULT: str = Settings.model_fields["encoder_backend"].default  # the product's default
GOAL_DELTA = 0.005  # the goal: each retrieval metric within this of torch float32
GOAL_COSINE = encoders.AGREEMENT  # what `prepare` asks of a backend on its probe texts
EVAL_DEPTH = flywheel_bench.EVAL_DEPTH
LONG, SHORT = "long", "short"  # article chunks (~160 word pieces), entity chunks (~25)
SAMPLE_LAYOUT = {LONG: "article", SHORT: "entity"}
WARMUP_CALLS = 5

console = kb_pipeline.console


# --- the knowledge, chunked as ingest chunks it ------------------------------------------


@dataclass
class Corpus:
    """One layout's chunks as the retriever embeds them, and each knowledge item's gold chunks.

    Chunked by the product's ``Chunker`` at the settings' sizes and titled as ingest does
    (``embedding_text``), numbered in document order; no database, since exact search over
    the chunks is what the flywheel benchmark's held-out evaluation does anyway."""

    layout: str
    ids: list[int]
    texts: list[str]
    gold: dict[str, frozenset[int]]  # knowledge item (entity layout id) → its chunk ids


def build_corpus(layout: str, chunk_size: int, chunk_overlap: int) -> Corpus:
    chunker = Chunker(chunk_size, chunk_overlap)
    refs: dict[str, list[ChunkRef]] = {}
    texts: list[str] = []
    for doc in layouts.documents(layout):
        for chunk in chunker.split(doc):
            ref = ChunkRef(len(texts) + 1, 0, doc.title, None, doc.external_id, chunk)
            refs.setdefault(doc.external_id, []).append(ref)
            texts.append(embedding_text(doc.title, chunk))
    return Corpus(layout, list(range(1, len(texts) + 1)), texts, gold_from_chunks(layout, refs))


def gold_from_chunks(layout: str, chunks: dict[str, list[ChunkRef]]) -> dict[str, frozenset[int]]:
    """``layouts.gold_chunks`` on chunks held in memory (document external id → its chunks)."""
    if layout in ("entity", "question"):
        return {ext: frozenset(c.chunk_id for c in refs) for ext, refs in chunks.items()}
    found: dict[str, frozenset[int]] = {}
    for domain, entities in layouts.knowledge().items():
        for entity_id, entity in entities.items():
            refs = chunks.get(layouts.article_id(domain, entity_id))
            if refs:
                found |= layouts.article_gold(layouts.article(domain, entity_id, entity), refs)
    return found


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    gold: dict[str, frozenset[int]]  # layout → the ticket's gold chunks there


def held_out_queries(
    tickets: Sequence[flywheel_bench.DstcTicket], corpora: dict[str, Corpus]
) -> list[Query]:
    """The flywheel benchmark's held-out tickets (its split), as the draft path queries."""
    return [
        Query(
            f"dstc11:{t.instance}",
            t.ticket.query_text(),
            {name: flywheel_bench.gold_of(t, c.gold) for name, c in corpora.items()},
        )
        for t in tickets
    ]


def sample(texts: Sequence[str], size: int, seed: int) -> list[str]:
    """A seeded draw of ``size`` texts (all of them, shuffled, when there are fewer)."""
    picked = list(texts)
    random.Random(seed).shuffle(picked)
    return picked[:size]


# --- figures -----------------------------------------------------------------------------


@dataclass
class Prepared:
    """What ``encoders.prepare`` cost and decided for one row."""

    seconds: float  # prepare's wall time: model load, torch reference, export, probe check
    load_seconds: float  # ``encoders.load`` afterwards (OpenVINO compiles here)
    backend: str  # what runs
    export_s: float | None = None
    probe_agreement: float | None = None
    probe_speedup: float | None = None  # × torch on the probe texts, as prepare timed them
    note: str = ""


@dataclass
class Speed:
    items: int
    word_pieces: float  # mean per item, after the model's truncation
    per_s: list[float]  # one rate per pass

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_s)


@dataclass
class Latency:
    calls: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


@dataclass
class Cosine:
    """Per-text cosine between a backend's vector and torch float32's."""

    texts: int
    mean: float
    min: float


@dataclass
class EmbedderRow:
    row: str  # as AITL_ENCODER_BACKEND: torch, torch-bf16, onnx, openvino, auto
    prepared: Prepared | None = None
    speed: dict[str, Speed] = field(default_factory=dict)  # long, short
    latency: Latency | None = None  # one query, one call
    cosine: dict[str, Cosine] = field(default_factory=dict)  # long, short, corpus:<layout>
    retrieval: dict[str, dict[str, float]] = field(default_factory=dict)  # layout → metrics
    judged: dict[str, int] = field(default_factory=dict)  # layout → judged queries
    corpus_per_s: dict[str, float] = field(default_factory=dict)  # layout → whole corpus rate
    error: str | None = None

    @property
    def backend(self) -> str | None:
        return self.prepared.backend if self.prepared else None


@dataclass
class Scores:
    """A reranker backend's scores against torch float32's on the same (query, chunk) pairs."""

    pairs: int
    pearson: float  # what ``prepare`` checks (≥ GOAL_COSINE)
    max_abs_diff: float
    top_overlap: float  # mean share of the context_k chunks kept in both rankings
    same_top: float  # share of queries whose context_k chunks come in the very same order


@dataclass
class RerankerRow:
    row: str
    prepared: Prepared | None = None
    speed: Speed | None = None  # pairs/s on a sample of the (query, retrieved chunk) pairs
    latency: Latency | None = None  # one query's retrieve_k pairs in one call
    scores: Scores | None = None
    retrieval: dict[str, float] = field(default_factory=dict)  # torch retrieval, reranked
    error: str | None = None

    @property
    def backend(self) -> str | None:
        return self.prepared.backend if self.prepared else None


# --- measuring ---------------------------------------------------------------------------


def rates(run: Callable[[list], Any], items: list, passes: int) -> tuple[list[float], Any]:
    """Items per second of ``passes`` timed calls over all of ``items`` (after a warm-up),
    and the last call's outputs."""
    run(items[:8])
    found, outputs = [], None
    for _ in range(passes):
        started = time.perf_counter()
        outputs = run(items)
        found.append(round(len(items) / (time.perf_counter() - started), 1))
    return found, outputs


def latency(run: Callable[[list], Any], calls: Sequence[list], count: int) -> Latency:
    """Wall time of ``count`` calls (cycling through ``calls``), after a few untimed ones."""
    for items in calls[:WARMUP_CALLS]:
        run(items)
    times = []
    for n in range(count):
        started = time.perf_counter()
        run(calls[n % len(calls)])
        times.append((time.perf_counter() - started) * 1000)
    values = np.array(times)
    return Latency(
        calls=count,
        p50_ms=round(float(np.percentile(values, 50)), 2),
        p95_ms=round(float(np.percentile(values, 95)), 2),
        mean_ms=round(float(values.mean()), 2),
    )


def cosine(reference: np.ndarray, other: np.ndarray) -> Cosine:
    """Row by row (both L2-normalised, so the dot product)."""
    values = np.sum(reference.astype(np.float64) * other.astype(np.float64), axis=1)
    return Cosine(len(values), round(float(values.mean()), 6), round(float(values.min()), 6))


def search(query_vectors: np.ndarray, chunk_vectors: np.ndarray, ids: list[int], k: int):
    """Exact cosine search: each query's top-k (chunk id, cosine), best first."""
    scores = query_vectors @ chunk_vectors.T
    k = min(k, len(ids))
    found = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:k]
        found.append([(ids[i], float(row[i])) for i in top])
    return found


def metrics(
    queries: Sequence[Query],
    layout: str,
    ranked: Sequence[list[tuple[int, float]]],
    retrieve_k: int,
    context_k: int,
) -> tuple[dict[str, float], int]:
    """ir_measures metrics of a ranking (``flywheel.evaluation.retrieval_metrics``, the gate's
    and the paper's) over the queries with gold in the layout, and how many there are."""
    qrels = {q.query_id: {str(c): 1 for c in q.gold[layout]} for q in queries if q.gold[layout]}
    run = to_run({q.query_id: hits for q, hits in zip(queries, ranked, strict=True)})
    result = retrieval_metrics(qrels, run, retrieve_k=retrieve_k, context_k=context_k)
    return {k: round(v, 6) for k, v in result.metrics.items()}, result.queries


def goal_metrics(retrieve_k: int, context_k: int) -> list[str]:
    """The metrics the goal reads: recall and precision at the drafts' depths, MRR@10, nDCG@10."""
    return [f"recall@{retrieve_k}", f"precision@{context_k}", "mrr@10", "ndcg@10"]


def rerank(
    ranked: Sequence[list[tuple[int, float]]],
    scores: np.ndarray,
    rerank_k: int,
    cosine_weight: float,
) -> list[list[tuple[int, float]]]:
    """Each query's head reordered by the blended scores (as ``CrossEncoderReranker`` and the
    flywheel's evaluator do); ``scores`` holds the heads' pairs in query order."""
    found, at = [], 0
    for hits in ranked:
        head = hits[:rerank_k]
        cross = scores[at : at + len(head)]
        at += len(head)
        mixed = blend(list(cross), [c for _, c in head], cosine_weight)
        order = sorted(zip([c for c, _ in head], mixed, strict=True), key=lambda h: -h[1])
        found.append(order + hits[rerank_k:])
    return found


def score_agreement(
    reference: np.ndarray,
    other: np.ndarray,
    ranked_reference: Sequence[list[tuple[int, float]]],
    ranked_other: Sequence[list[tuple[int, float]]],
    top: int,
) -> Scores:
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    a, b = ref - ref.mean(), oth - oth.mean()
    spread = float(np.linalg.norm(a) * np.linalg.norm(b))
    overlaps, same = [], 0
    for mine, theirs in zip(ranked_reference, ranked_other, strict=True):
        first, second = [c for c, _ in mine[:top]], [c for c, _ in theirs[:top]]
        overlaps.append(len(set(first) & set(second)) / max(len(first), 1))
        same += first == second
    return Scores(
        pairs=len(ref),
        pearson=round(float(a @ b / spread), 6) if spread > 0 else 0.0,
        max_abs_diff=round(float(np.max(np.abs(ref - oth))), 6) if len(ref) else 0.0,
        top_overlap=round(statistics.fmean(overlaps), 6) if overlaps else 0.0,
        same_top=round(same / max(len(overlaps), 1), 6),
    )


def word_pieces(model: encoders.EncoderModel, items: Sequence[Any]) -> float:
    """Mean tokens per text (or pair) as the model reads them, truncation included."""
    counts: list[int] = []
    for start in range(0, len(items), 64):
        mask = model.st.preprocess(list(items[start : start + 64]))["attention_mask"]
        counts.extend(int(n) for n in mask.sum(dim=1))
    return round(statistics.fmean(counts), 1) if counts else 0.0


def backend_settings(settings: Settings, row: str, exports: Path) -> encoders.BackendSettings:
    """The product's backend settings for one row; each row exports into its own folder, so
    every prepare is a first one (its export time included)."""
    chosen = settings.model_copy(
        update={"encoder_backend": row, "encoder_exports_dir": exports / row}
    )
    return factory.encoder_backend(chosen)


def prepare(
    path: Path, kind: encoders.Kind, chosen: encoders.BackendSettings
) -> tuple[Prepared, encoders.EncoderModel]:
    """``encoders.prepare`` then ``encoders.load``, as the product does at start-up, timed."""
    started = time.perf_counter()
    choice = encoders.prepare(path, kind, chosen)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = encoders.load(path, kind, chosen)
    load_seconds = time.perf_counter() - started
    trial, base = choice.trial(choice.backend), choice.trial(REFERENCE)
    speedup = None
    if trial and base and trial.texts_per_s and base.texts_per_s:
        speedup = round(trial.texts_per_s / base.texts_per_s, 2)
    return (
        Prepared(
            seconds=round(seconds, 1),
            load_seconds=round(load_seconds, 1),
            backend=model.backend,
            export_s=trial.export_s if trial else None,
            probe_agreement=trial.agreement if trial else None,
            probe_speedup=speedup,
            note=choice.note,
        ),
        model,
    )


def fell_back(row: str, prepared: Prepared) -> str | None:
    """A named backend that is not what runs (it failed to export or load) is not measured."""
    if row in ("auto", prepared.backend):
        return None
    return f"{row} did not run ({prepared.note or 'fell back'}); {prepared.backend} instead"


@dataclass
class Inputs:
    """What every row is measured on."""

    samples: dict[str, list[str]]  # long, short: the throughput texts
    corpora: dict[str, Corpus]  # the layouts measured for retrieval
    queries: list[Query]  # the held-out tickets
    one_query: list[list[str]]  # single texts for the one-query latency


def measure_embedder(
    row: str,
    settings: Settings,
    args: argparse.Namespace,
    inputs: Inputs,
    reference: dict[str, np.ndarray] | None,
) -> tuple[EmbedderRow, dict[str, np.ndarray]]:
    """One row: prepare, speed, latency, then every layout's corpus and the held-out queries
    encoded and searched exactly; cosines against ``reference`` (torch float32's vectors)."""
    path = Path(settings.embedding_model)
    found = EmbedderRow(row)
    found.prepared, model = prepare(path, "embedder", backend_settings(settings, row, args.exports))
    found.error = fell_back(row, found.prepared)
    if found.error:
        return found, {}
    console.print(
        f"[bold]embedder {row}[/]: {model.backend}, prepared in {found.prepared.seconds} s"
    )

    def embed(texts: list) -> np.ndarray:
        return model.embed(texts, settings.embedding_batch_size)

    vectors: dict[str, np.ndarray] = {}
    for name, texts in inputs.samples.items():
        per_s, vectors[name] = rates(embed, texts, args.passes)
        found.speed[name] = Speed(len(texts), word_pieces(model, texts), per_s)
    found.latency = latency(embed, inputs.one_query, args.latency)
    vectors["queries"] = embed([q.text for q in inputs.queries])
    for layout, corpus in inputs.corpora.items():
        started = time.perf_counter()
        vectors[f"corpus:{layout}"] = embed(corpus.texts)
        found.corpus_per_s[layout] = round(len(corpus.texts) / (time.perf_counter() - started), 1)
        ranked = search(vectors["queries"], vectors[f"corpus:{layout}"], corpus.ids, args.depth)
        found.retrieval[layout], found.judged[layout] = metrics(
            inputs.queries, layout, ranked, settings.retrieve_k, settings.context_k
        )
    reference = reference if reference is not None else vectors
    for name in [*inputs.samples, "queries", *(f"corpus:{lay}" for lay in inputs.corpora)]:
        found.cosine[name] = cosine(reference[name], vectors[name])
    return found, vectors


@dataclass
class RerankInputs:
    layout: str
    queries: list[Query]
    ranked: list[list[tuple[int, float]]]  # torch float32's exact retrieval, depth args.depth
    pairs: list[tuple[str, str]]  # every query's head: (query, chunk text)
    per_query: list[list[tuple[str, str]]]


def rerank_inputs(
    queries: list[Query], corpus: Corpus, ranked: list[list[tuple[int, float]]], rerank_k: int
) -> RerankInputs:
    texts = dict(zip(corpus.ids, corpus.texts, strict=True))
    per_query = [
        [(q.text, texts[c]) for c, _ in hits[:rerank_k]]
        for q, hits in zip(queries, ranked, strict=True)
    ]
    pairs = [pair for group in per_query for pair in group]
    return RerankInputs(corpus.layout, queries, ranked, pairs, [g for g in per_query if g])


def measure_reranker(
    row: str,
    path: Path,
    settings: Settings,
    args: argparse.Namespace,
    inputs: RerankInputs,
    reference: tuple[np.ndarray, list] | None,
) -> tuple[RerankerRow, tuple[np.ndarray, list]]:
    """One reranker row: prepare, pairs/s, one query's latency, the scores and the reranked
    ranking against torch float32's, and the reranked metrics."""
    found = RerankerRow(row)
    chosen = backend_settings(settings, row, args.exports)
    found.prepared, model = prepare(path, "cross-encoder", chosen)
    found.error = fell_back(row, found.prepared)
    if found.error:
        return found, (np.zeros(0), [])
    console.print(
        f"[bold]reranker {row}[/]: {model.backend}, prepared in {found.prepared.seconds} s"
    )
    timed = sample(inputs.pairs, args.texts, args.seed)
    found.speed = Speed(
        len(timed), word_pieces(model, timed), rates(model.score, timed, args.passes)[0]
    )
    found.latency = latency(model.score, inputs.per_query, args.latency)
    scores = model.score(inputs.pairs)
    ranked = rerank(inputs.ranked, scores, settings.retrieve_k, settings.reranker_cosine_weight)
    found.retrieval, _ = metrics(
        inputs.queries, inputs.layout, ranked, settings.retrieve_k, settings.context_k
    )
    reference = reference if reference is not None else (scores, ranked)
    found.scores = score_agreement(reference[0], scores, reference[1], ranked, settings.context_k)
    return found, (scores, ranked)


def make_reranker(
    settings: Settings,
    train: Sequence[flywheel_bench.DstcTicket],
    corpus: Corpus,
    chunk_vectors: np.ndarray,
    out_dir: Path,
    pairs: int,
    seed: int,
) -> dict[str, Any]:
    """A small cross-encoder trained by the product's trainer from the shipped MiniLM on the
    flywheel benchmark's annotated (never held-out) tickets: per ticket, a gold chunk (label 1)
    and the two best-ranked other chunks of torch float32's search (label 0)."""
    from flywheel.examples import RerankExample
    from flywheel.train_retrieval import RerankerTraining, train_reranker

    tickets = [t for t in train if flywheel_bench.gold_of(t, corpus.gold)][: max(pairs // 3, 1)]
    texts = dict(zip(corpus.ids, corpus.texts, strict=True))
    model = encoders.load(Path(settings.embedding_model), "embedder", encoders.TORCH)
    query_vectors = model.embed([t.ticket.query_text() for t in tickets])
    examples = []
    found = search(query_vectors, chunk_vectors, corpus.ids, 20)
    for ticket, hits in zip(tickets, found, strict=True):
        gold = flywheel_bench.gold_of(ticket, corpus.gold)
        query, qid = ticket.ticket.query_text(), f"dstc11:{ticket.instance}"
        positive = min(gold)
        examples.append(RerankExample(qid, query, positive, texts[positive], 1.0))
        for chunk_id in [c for c, _ in hits if c not in gold][:2]:
            examples.append(RerankExample(qid, query, chunk_id, texts[chunk_id], 0.0))
    trained = train_reranker(
        settings.embedding_model, examples, out_dir, RerankerTraining(seed=seed)
    )
    return {
        "how": "trained here by flywheel.train_retrieval.train_reranker from the shipped MiniLM",
        "layout": corpus.layout,
        "tickets": len(tickets),
        "examples": trained.examples,
        "steps": trained.steps,
        "train_loss": trained.train_loss,
        "seconds": round(trained.seconds, 1),
    }


# --- goals and report --------------------------------------------------------------------


def deltas(rows: Sequence[Any], table: Callable[[Any], dict[str, float]]) -> dict[str, dict]:
    """Each measured row's metrics minus torch float32's (``table`` reads a row's metrics)."""
    base = next((r for r in rows if r.row == REFERENCE and not r.error), None)
    if base is None:
        return {}
    reference = table(base)
    return {
        r.row: {m: round(v - reference[m], 6) for m, v in table(r).items() if m in reference}
        for r in rows
        if not r.error and table(r)
    }


def within(delta: dict[str, float], names: Sequence[str]) -> bool:
    return all(abs(delta[m]) <= GOAL_DELTA + 1e-12 for m in names)


def metric_goal(
    rows: Sequence[Any], table: Callable[[Any], dict[str, float]], names: Sequence[str]
) -> dict[str, Any]:
    """The default backend's metrics within GOAL_DELTA of torch float32's, each of ``names``;
    ``pass`` None when the default row or torch's was not measured."""
    found = deltas(rows, table).get(DEFAULT)
    default = next((r for r in rows if r.row == DEFAULT), None)
    return {
        "goal": f"|default - torch float32| <= {GOAL_DELTA} on each of {', '.join(names)}",
        "default": DEFAULT,
        "backend": default.backend if default else None,
        "measured": {m: found[m] for m in names} if found else None,
        "pass": within(found, names) if found else None,
    }


def cosine_goal(rows: Sequence[EmbedderRow]) -> dict[str, Any]:
    """The default backend's vectors interchangeable with torch float32's: each text's cosine
    at least GOAL_COSINE (what ``prepare`` asks on its probe texts), on every text measured."""
    default = next((r for r in rows if r.row == DEFAULT and not r.error and r.cosine), None)
    lowest = min((c.min for c in default.cosine.values()), default=None) if default else None
    return {
        "goal": f"min cosine to torch float32 >= {GOAL_COSINE} on every text measured",
        "default": DEFAULT,
        "backend": default.backend if default else None,
        "measured": lowest,
        "pass": None if lowest is None else lowest >= GOAL_COSINE,
    }


def goals(
    embedders: Sequence[EmbedderRow],
    rerankers: Sequence[RerankerRow],
    layouts_measured: Sequence[str],
    names: Sequence[str],
) -> dict[str, dict[str, Any]]:
    found = {"default_vectors_agree": cosine_goal(embedders)}
    for layout in layouts_measured:
        found[f"retrieval_{layout}"] = metric_goal(
            embedders, lambda r, lay=layout: r.retrieval.get(lay, {}), names
        )
    if rerankers:
        found["reranked"] = metric_goal(rerankers, lambda r: r.retrieval, names)
    return found


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "[dim]n/a[/]"
    return "[bold green]PASS[/]" if ok else "[bold white on red] MISS [/]"


def _num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _label(row: EmbedderRow | RerankerRow) -> str:
    if row.row == "auto" and row.backend:
        return f"auto → {row.backend}"
    return row.row


def _prepare(row: EmbedderRow | RerankerRow) -> str:
    """Prepare's seconds, and in brackets the export's part of them."""
    p = row.prepared
    if p is None:
        return "n/a"
    return f"{p.seconds:,.1f}" + (f" ({p.export_s:,.1f})" if p.export_s else "")


def _speedup(value: float | None, base: float | None) -> str:
    if value is None:
        return "n/a"
    if not base or value == base:
        return f"{value:,.1f}"
    return f"{value:,.1f} ({value / base:.1f}×)"


def speed_table(rows: Sequence[EmbedderRow]) -> Table:
    """Per backend: prepare time, throughput on long and short texts, one query, cosines."""
    table = Table(title="Embedder: speed and agreement with torch float32")
    for name in (
        "backend",
        "prepare s (export)",
        "long texts/s",
        "short texts/s",
        "1 query p50 / p95",
        "cosine long mean / min",
        "cosine short / corpora min",
    ):
        table.add_column(name, justify="left" if name == "backend" else "right")
    base = next((r for r in rows if r.row == REFERENCE and not r.error), None)
    for r in rows:
        if r.error:
            table.add_row(_label(r), _prepare(r), r.error)
            continue
        long, short = r.speed.get(LONG), r.speed.get(SHORT)
        corpora = [c.min for name, c in r.cosine.items() if name.startswith("corpus:")]
        table.add_row(
            _label(r),
            _prepare(r),
            _speedup(long.mean if long else None, _mean(base, LONG)),
            _speedup(short.mean if short else None, _mean(base, SHORT)),
            f"{_num(r.latency.p50_ms)} / {_num(r.latency.p95_ms)} ms" if r.latency else "n/a",
            _cosines(r.cosine.get(LONG)),
            f"{_num(_min(r.cosine.get(SHORT)), 5)} / {_num(min(corpora, default=None), 5)}",
        )
    return table


def _mean(row: EmbedderRow | None, name: str) -> float | None:
    return row.speed[name].mean if row and name in row.speed else None


def _min(value: Cosine | None) -> float | None:
    return value.min if value else None


def _cosines(value: Cosine | None) -> str:
    return "n/a" if value is None else f"{value.mean:.5f} / {value.min:.5f}"


def metrics_table(
    title: str,
    rows: Sequence[Any],
    table_of: Callable[[Any], dict[str, float]],
    names: Sequence[str],
) -> Table:
    """Each metric with its difference to torch float32, and whether all are within GOAL_DELTA."""
    table = Table(title=title)
    table.add_column("backend")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column(f"within {GOAL_DELTA}", justify="center")
    found = deltas(rows, table_of)
    for r in rows:
        values = table_of(r) if not r.error else {}
        if not values:
            table.add_row(_label(r), *(["n/a"] * len(names)), r.error or "")
            continue
        delta = found.get(r.row)
        cells = [
            f"{values[m]:.4f}" + (f" ({delta[m]:+.4f})" if delta and r.row != REFERENCE else "")
            for m in names
        ]
        ok = within(delta, names) if delta else None
        table.add_row(_label(r), *cells, "reference" if r.row == REFERENCE else _verdict(ok))
    return table


def reranker_table(rows: Sequence[RerankerRow], context_k: int, retrieve_k: int) -> Table:
    table = Table(title="Reranker: speed and agreement with torch float32")
    for name in (
        "backend",
        "prepare s (export)",
        "pairs/s",
        f"1 query ({retrieve_k} pairs) p50 / p95",
        "score corr / max |Δ|",
        f"top-{context_k} overlap / same order",
    ):
        table.add_column(name, justify="left" if name == "backend" else "right")
    base = next((r for r in rows if r.row == REFERENCE and not r.error and r.speed), None)
    for r in rows:
        if r.error or r.speed is None:
            table.add_row(_label(r), _prepare(r), r.error)
            continue
        s = r.scores
        table.add_row(
            _label(r),
            _prepare(r),
            _speedup(r.speed.mean, base.speed.mean if base and base.speed else None),
            f"{_num(r.latency.p50_ms)} / {_num(r.latency.p95_ms)} ms" if r.latency else "n/a",
            f"{s.pearson:.5f} / {s.max_abs_diff:.4f}" if s else "n/a",
            f"{s.top_overlap:.4f} / {s.same_top:.3f}" if s else "n/a",
        )
    return table


def goals_table(found: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=f"Goals (the default backend: AITL_ENCODER_BACKEND={DEFAULT})")
    for name in ("goal", "backend", "measured", "verdict"):
        table.add_column(name)
    for name, goal in found.items():
        measured = goal["measured"]
        if isinstance(measured, dict):
            shown = ", ".join(f"{m} {v:+.4f}" for m, v in measured.items())
        else:
            shown = _num(measured, 6)
        backend = goal["backend"] or "not measured"
        table.add_row(name, backend, shown, _verdict(goal["pass"]))
    return table


def print_report(report: dict[str, Any], embedders, rerankers, names) -> None:
    console.print(speed_table(embedders))
    for layout in report["layouts"]:
        judged = next((r.judged[layout] for r in embedders if layout in r.judged), 0)
        console.print(
            metrics_table(
                f"Retrieval on the held-out tickets: {layout} layout, {judged} judged queries",
                embedders,
                lambda r, lay=layout: r.retrieval.get(lay, {}),
                names,
            )
        )
    if rerankers:
        settings = report["settings"]
        console.print(reranker_table(rerankers, settings["context_k"], settings["retrieve_k"]))
        console.print(
            metrics_table(
                f"Reranked (torch float32 retrieval, {report['reranker']['layout']} layout)",
                rerankers,
                lambda r: r.retrieval,
                names,
            )
        )
    console.print(goals_table(report["goals"]))
    console.print(
        f"load average {report['machine']['load_before']} before, "
        f"{report['machine']['load_after']} after"
    )
    console.print(f"results written to {report['results']}; total {report['total_seconds']} s")
    verdicts = [goal["pass"] for goal in report["goals"].values()]
    missed = [name for name, goal in report["goals"].items() if goal["pass"] is False]
    for name in missed:
        console.print(Panel(f"[bold]MISS: {name}[/] {report['goals'][name]}", style="bold red"))
    if all(v is None for v in verdicts):
        console.print(f"no verdict: the default backend ({DEFAULT}) or torch was not measured")
    elif not missed:
        console.print("[bold green]all goals met[/]")


def machine() -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_flags": [f for f in wanted if f in flags],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__,
        "load_before": [round(v, 2) for v in os.getloadavg()],
    }


# --- run ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        type=_rows,
        default=list(ROWS),
        help=f"rows to measure, comma-separated, among {', '.join(ROWS)} (torch float32, the "
        "reference, is always measured); default all",
    )
    parser.add_argument(
        "--layouts",
        type=_layouts,
        default=["entity", "article"],
        help="layouts whose held-out retrieval is measured (the reranker's is the first);"
        " default entity,article",
    )
    parser.add_argument(
        "--tickets",
        type=flywheel_bench.positive,
        default=None,
        help="dstc11 tickets as the flywheel benchmark takes them (its last 10%% are held out);"
        " default all",
    )
    parser.add_argument(
        "--texts", type=flywheel_bench.positive, default=512, help="texts per speed sample"
    )
    parser.add_argument(
        "--passes", type=flywheel_bench.positive, default=3, help="timed passes per sample"
    )
    parser.add_argument(
        "--latency",
        type=flywheel_bench.positive,
        default=200,
        help="timed one-query calls per backend",
    )
    parser.add_argument(
        "--reranker",
        type=Path,
        default=None,
        help="a cross-encoder folder to measure; default: one trained here (--reranker-pairs)",
    )
    parser.add_argument(
        "--reranker-pairs",
        type=flywheel_bench.positive,
        default=300,
        help="training pairs of the reranker trained here (a third of them positive)",
    )
    parser.add_argument("--no-reranker", action="store_true", help="measure the embedder only")
    parser.add_argument("--seed", type=int, default=SEED, help="samples' and training's seed")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="exports and the trained reranker; default: a temporary folder, removed after",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    args.backends = [REFERENCE, *(b for b in args.backends if b != REFERENCE)]
    return args


def _rows(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or len(set(names)) != len(names) or set(names) - set(ROWS):
        raise argparse.ArgumentTypeError(
            f"distinct backends among {', '.join(ROWS)}, comma-separated, not {text!r}"
        )
    return names


def _layouts(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or len(set(names)) != len(names) or set(names) - set(layouts.LAYOUTS):
        raise argparse.ArgumentTypeError(
            f"distinct layouts among {', '.join(layouts.LAYOUTS)}, not {text!r}"
        )
    return names


def make_settings(work_dir: Path) -> Settings:
    """Product defaults (AITL_* variables still apply to sizes, depths and threads)."""
    return Settings(_env_file=None, data_dir=work_dir, database_url=None)


def _settings_used(settings: Settings) -> dict[str, Any]:
    names = (
        "embedding_model",
        "embedding_batch_size",
        "chunk_size",
        "chunk_overlap",
        "retrieve_k",
        "context_k",
        "reranker_cosine_weight",
        "torch_threads",
    )
    return {name: getattr(settings, name) for name in names} | {"default_backend": DEFAULT}


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    args.exports = settings.data_dir / "exports"
    shutil.rmtree(args.exports, ignore_errors=True)  # each prepare is a first one
    args.depth = max(EVAL_DEPTH, settings.retrieve_k)
    names = goal_metrics(settings.retrieve_k, settings.context_k)
    report: dict[str, Any] = {
        "benchmark": "encoders",
        "machine": machine(),
        "settings": _settings_used(settings),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "layouts": args.layouts,
        "goal_metrics": names,
    }
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)  # as the CLI does
    tickets = flywheel_bench.load_tickets(args.tickets)
    train, test = flywheel_bench.split(tickets, flywheel_bench.HOLDOUT)
    needed = dict.fromkeys([*args.layouts, *SAMPLE_LAYOUT.values()])
    corpora = {
        layout: build_corpus(layout, settings.chunk_size, settings.chunk_overlap)
        for layout in needed
    }
    queries = held_out_queries(test, {lay: corpora[lay] for lay in args.layouts})
    inputs = Inputs(
        samples={
            name: sample(corpora[layout].texts, args.texts, args.seed)
            for name, layout in SAMPLE_LAYOUT.items()
        },
        corpora={lay: corpora[lay] for lay in args.layouts},
        queries=queries,
        one_query=[[q.text] for q in queries],
    )
    report["data"] = {
        "tickets": len(tickets),
        "annotated_tickets": len(train),
        "held_out_tickets": len(test),
        "corpus_chunks": {lay: len(c.texts) for lay, c in corpora.items()},
        "samples": {name: f"{SAMPLE_LAYOUT[name]} layout chunks" for name in SAMPLE_LAYOUT},
    }
    console.print(
        f"held-out tickets: {len(test)} of {len(tickets)}; chunks: "
        + ", ".join(f"{lay} {len(c.texts):,}" for lay, c in corpora.items())
    )
    embedders: list[EmbedderRow] = []
    reference: dict[str, np.ndarray] | None = None
    ranked_reference: list | None = None
    for row in args.backends:
        found, vectors = measure_embedder(row, settings, args, inputs, reference)
        embedders.append(found)
        if row == REFERENCE:
            reference = vectors
            first = args.layouts[0]
            ranked_reference = search(
                vectors["queries"], vectors[f"corpus:{first}"], corpora[first].ids, args.depth
            )
    rerankers: list[RerankerRow] = []
    if not args.no_reranker and reference is not None and ranked_reference is not None:
        first = args.layouts[0]
        rerankers = run_rerankers(
            settings,
            args,
            (train, corpora[first], reference[f"corpus:{first}"]),
            queries,
            ranked_reference,
            report,
        )
    report["embedder"] = [asdict(r) | {"backend": r.backend} for r in embedders]
    report["embedder_minus_torch"] = {
        lay: deltas(embedders, lambda r, lay=lay: r.retrieval.get(lay, {})) for lay in args.layouts
    }
    report["reranker_rows"] = [asdict(r) | {"backend": r.backend} for r in rerankers]
    report["reranked_minus_torch"] = deltas(rerankers, lambda r: r.retrieval)
    report["goals"] = goals(embedders, rerankers, args.layouts, names)
    report["machine"]["load_after"] = [round(v, 2) for v in os.getloadavg()]
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["results"] = str(args.results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report, embedders, rerankers, names)
    return report


def run_rerankers(
    settings: Settings,
    args: argparse.Namespace,
    training: tuple[Sequence[flywheel_bench.DstcTicket], Corpus, np.ndarray],
    queries: list[Query],
    ranked: list[list[tuple[int, float]]],
    report: dict[str, Any],
) -> list[RerankerRow]:
    """The cross-encoder (given, or trained here on the annotated tickets, the corpus and its
    torch vectors of ``training``) on every row, reranking torch float32's retrieval."""
    train, corpus, chunk_vectors = training
    path = args.reranker
    if path is None:
        path = settings.data_dir / "reranker"
        console.print(f"training a reranker on {args.reranker_pairs} pairs ({corpus.layout})")
        report["reranker"] = make_reranker(
            settings, train, corpus, chunk_vectors, path, args.reranker_pairs, args.seed
        )
        trained = report["reranker"]
        console.print(
            f"  {trained['examples']} examples, {trained['steps']} steps, training loss "
            f"{_num(trained['train_loss'], 3)}, {trained['seconds']} s"
        )
    else:
        report["reranker"] = {"how": f"given: {path}", "layout": corpus.layout}
    inputs = rerank_inputs(queries, corpus, ranked, settings.retrieve_k)
    rows: list[RerankerRow] = []
    reference: tuple[np.ndarray, list] | None = None
    for row in args.backends:
        found, outputs = measure_reranker(row, path.resolve(), settings, args, inputs, reference)
        rows.append(found)
        if row == REFERENCE:
            reference = outputs
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # the exports trace the model: torch's tracer and transformers warn about it at length
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*might cause the trace to be incorrect.*")
    temporary = args.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="aitl-encoders-")) if temporary else args.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"work dir: {work_dir} ({'temporary' if temporary else 'given'})")
    try:
        run(make_settings(work_dir), args)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
        elif temporary:
            console.print(f"kept work dir {work_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
