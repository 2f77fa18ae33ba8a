"""IR evaluation of retrievers and rerankers on judged queries: what the promotion gate reads.

Metrics come from ``ir_measures`` (trec_eval semantics), never computed by hand here. A query
with no relevant chunk is not judged and does not count; a judged query the run misses counts
as zero.

The gate's metrics follow the pipeline: a draft retrieves ``AITL_RETRIEVE_K`` chunks and keeps
``AITL_CONTEXT_K`` after reranking, so recall@retrieve_k, precision@context_k and
ndcg@context_k (with mrr@10) say what agents get. The paper's recall@75, precision@8 and
ndcg@10 are computed beside them for reports and benchmarks: on a small knowledge base
recall@75 is 1.0 for every model, so it cannot tell two retrievers apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np
from ir_measures import RR, R, nDCG

from aitl.core.settings import Settings
from flywheel.encoding import EncodingLog
from flywheel.exceptions import NotEnoughData
from rag import encoders
from rag.rerank import blend

log = logging.getLogger(__name__)
Measure = Any  # an ir_measures measure, e.g. ``R @ 20``
# the paper's four, at its depths (METRICS): reported for comparison; of them only mrr@10 is
# also at a depth drafts use, unless AITL_RETRIEVE_K / AITL_CONTEXT_K match the others
PAPER = {
    "recall@75": R @ 75,
    "precision@8": ir_measures.P @ 8,
    "mrr@10": RR @ 10,
    "ndcg@10": nDCG @ 10,
}
METRICS = tuple(PAPER)
MRR = "mrr@10"
# the product's depths (AITL_RETRIEVE_K, AITL_CONTEXT_K) where a caller gives none
RETRIEVE_K: int = Settings.model_fields["retrieve_k"].default
CONTEXT_K: int = Settings.model_fields["context_k"].default


def pipeline_metrics(retrieve_k: int, context_k: int) -> dict[str, Measure]:
    """The metrics at the depths drafts use: what the gate decides on and guards."""
    return {
        f"recall@{retrieve_k}": R @ retrieve_k,
        f"precision@{context_k}": ir_measures.P @ context_k,
        f"ndcg@{context_k}": nDCG @ context_k,
        MRR: RR @ 10,
    }


def gate_metrics(retrieve_k: int, context_k: int) -> dict[str, Measure]:
    """Every metric an evaluation reports: the pipeline's first, then the paper's it lacks
    (one name, one entry: at retrieve_k=75 recall@75 appears once)."""
    return pipeline_metrics(retrieve_k, context_k) | PAPER


def reported_only(retrieve_k: int, context_k: int) -> frozenset[str]:
    """The paper's metrics that are not at a pipeline depth: reported, never blocking."""
    return frozenset(PAPER) - set(pipeline_metrics(retrieve_k, context_k))


Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class EvalQuery:
    """A judged ticket: its query text and the chunks that answer it."""

    query_id: str
    text: str
    relevant: frozenset[int]


@dataclass(frozen=True)
class EvalResult:
    """Metrics by name, and which one decides (and in which direction) a promotion."""

    metrics: dict[str, float]
    primary: str
    greater_is_better: bool
    queries: int

    @property
    def score(self) -> float:
        return self.metrics[self.primary]


def retrieval_metrics(
    qrels: Qrels,
    run: Run,
    *,
    retrieve_k: int = RETRIEVE_K,
    context_k: int = CONTEXT_K,
    primary: str | None = None,
) -> EvalResult:
    """``gate_metrics(retrieve_k, context_k)`` over the judged queries of ``qrels``;
    NotEnoughData when none is judged. The primary is recall@retrieve_k unless named."""
    measures = gate_metrics(retrieve_k, context_k)
    primary = primary or f"recall@{retrieve_k}"
    if primary not in measures:
        raise ValueError(f"primary metric {primary!r} is not one of {tuple(measures)}")
    judged = {q: docs for q, docs in qrels.items() if any(rel > 0 for rel in docs.values())}
    if not judged:
        raise NotEnoughData("no query has a relevant chunk; there is nothing to evaluate")
    values = ir_measures.calc_aggregate(list(measures.values()), judged, run)
    metrics = {name: float(values.get(measure, 0.0)) for name, measure in measures.items()}
    return EvalResult(metrics=metrics, primary=primary, greater_is_better=True, queries=len(judged))


def load_encoder(
    path: str, backend: encoders.BackendSettings = encoders.TORCH
) -> encoders.EncoderModel:
    """The embedding model to evaluate, on the backend ``prepare`` chose for it (torch when
    none was); a module function so tests can count loads."""
    return encoders.load(Path(path), "embedder", backend)


def load_cross_encoder(
    path: str, backend: encoders.BackendSettings = encoders.TORCH
) -> encoders.EncoderModel:
    return encoders.load(Path(path), "cross-encoder", backend)


class RetrieverEvaluator:
    """Exact (brute-force cosine) search of the given chunks with a given embedding model, so a
    challenger that is not yet in pgvector is measured exactly like the champion; its metrics
    are ``gate_metrics(retrieve_k, context_k)``, at the depths drafts use.

    The models run on ``backend`` (``AITL_ENCODER_BACKEND``), each prepared for it before its
    first use: offline, so a model the gate promotes already has the export serving loads.
    What each encodes, on which backend and how fast, goes to ``log`` for the run record.
    """

    def __init__(
        self,
        chunks: Sequence[tuple[int, str]],
        queries: Sequence[EvalQuery],
        *,
        k: int = 100,
        retrieve_k: int = RETRIEVE_K,
        context_k: int = CONTEXT_K,
        batch_size: int = 64,
        backend: encoders.BackendSettings = encoders.TORCH,
        log: EncodingLog | None = None,
    ) -> None:
        self.backend = backend
        self.log = log or EncodingLog()
        self.choices: dict[tuple[str, str], encoders.Choice] = {}
        self._unprepared: set[tuple[str, str]] = set()  # failed once: not tried again
        self.chunk_ids = [int(chunk_id) for chunk_id, _ in chunks]
        self.chunk_texts = [text for _, text in chunks]
        self.queries = list(queries)
        self.k = k  # search depth: as deep as the deepest metric, for exact figures
        self.retrieve_k = retrieve_k
        self.context_k = context_k
        self.batch_size = batch_size
        self.qrels: Qrels = {
            q.query_id: {str(c): 1 for c in q.relevant} for q in self.queries if q.relevant
        }
        # vectors by model folder: the champion is evaluated many times
        self._chunk_vectors: dict[str, np.ndarray] = {}
        self._query_vectors: dict[str, np.ndarray] = {}
        self._encoders: dict[str, encoders.EncoderModel] = {}

    @cached_property
    def texts(self) -> dict[int, str]:
        """Chunk id → the text the models read (built once: the chunks never change)."""
        return dict(zip(self.chunk_ids, self.chunk_texts, strict=True))

    def evaluate(
        self,
        model_path: str | Path,
        *,
        reranker_path: str | Path | None = None,
        rerank_k: int = 20,
        cosine_weight: float = 1.0,
    ) -> EvalResult:
        """Metrics of the retriever alone, or with the reranker reordering its top ``rerank_k``
        as the product does (``rag.rerank.blend`` with ``cosine_weight``)."""
        ranked = self.retrieve(model_path)
        if reranker_path is not None:
            ranked = self.rerank(ranked, reranker_path, rerank_k, cosine_weight)
        return retrieval_metrics(
            self.qrels, to_run(ranked), retrieve_k=self.retrieve_k, context_k=self.context_k
        )

    def retrieve(self, model_path: str | Path) -> dict[str, list[tuple[int, float]]]:
        """Each query's top-k (chunk id, cosine) pairs, best first."""
        _, query_vectors = self.vectors(model_path)
        found = self._search(model_path, query_vectors, self.k)
        return {query.query_id: hits for query, hits in zip(self.queries, found, strict=True)}

    def search(
        self, model_path: str | Path, texts: Sequence[str], k: int
    ) -> list[list[tuple[int, float]]]:
        """The top-k (chunk id, cosine) of other texts than the judged queries (training
        tickets, for mining), searched exactly like them."""
        query_vectors = self._encode(model_path, list(texts), "tickets", step="mining")
        return self._search(model_path, query_vectors, k)

    def _search(
        self, model_path: str | Path, query_vectors: np.ndarray, k: int
    ) -> list[list[tuple[int, float]]]:
        chunk_vectors, _ = self.vectors(model_path)
        scores = query_vectors @ chunk_vectors.T
        k = min(k, len(self.chunk_ids))
        found = []
        for row in scores:
            top = np.argsort(-row, kind="stable")[:k]
            found.append([(self.chunk_ids[i], float(row[i])) for i in top])
        return found

    def vectors(self, model_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Normalised chunk and query embeddings of a model, encoded once per model folder."""
        key = _key(model_path)
        if key not in self._query_vectors:
            if key not in self._chunk_vectors:
                self._chunk_vectors[key] = self._encode(key, self.chunk_texts, "chunks")
            self._query_vectors[key] = self._encode(key, [q.text for q in self.queries], "queries")
        return self._chunk_vectors[key], self._query_vectors[key]

    def _encoder(self, model_path: str | Path) -> encoders.EncoderModel:
        """The model behind a folder, loaded once: mining searches with the live model after
        the evaluation encoded with it."""
        key = _key(model_path)
        if key not in self._encoders:
            self.prepare(key)
            self._encoders[key] = load_encoder(key, self.backend)
        return self._encoders[key]

    def prepare(
        self,
        model_path: str | Path,
        kind: encoders.Kind = "embedder",
        *,
        prefer: Sequence[str] = (),
    ) -> encoders.Choice | None:
        """Exports a model for the backend, once (``rag.encoders.prepare``); ``prefer``: the
        backend of the model it was trained from, tried first. A failure is logged once and
        the model evaluated on torch float32: an export never fails a cycle."""
        key = _key(model_path)
        if (kind, key) in self.choices or (kind, key) in self._unprepared:
            return self.choices.get((kind, key))
        try:
            choice = encoders.prepare(Path(key), kind, self.backend, prefer=prefer)
        except Exception:
            log.warning("could not prepare %s (%s); torch runs it", key, kind, exc_info=True)
            self._unprepared.add((kind, key))
            return None
        self.choices[(kind, key)] = choice
        if kind == "embedder":
            self._encoders.pop(key, None)
        return choice

    def backend_of(self, model_path: str | Path, kind: encoders.Kind = "embedder") -> str:
        """The backend a model runs on here (loading it): a model trained from it tries that
        backend first."""
        if kind == "embedder":
            return self._encoder(model_path).backend
        return self._cross_encoder(model_path).backend

    def _cross_encoder(self, model_path: str | Path) -> encoders.EncoderModel:
        key = _key(model_path)
        self.prepare(key, "cross-encoder")
        return load_cross_encoder(key, self.backend)

    def seed(self, model_path: str | Path, stored: dict[int, np.ndarray]) -> bool:
        """Use a model's stored chunk vectors (the live index's) instead of encoding the corpus.

        Only when every chunk has one: a partial index would make the comparison unfair.
        """
        if not self.chunk_ids or any(c not in stored for c in self.chunk_ids):
            return False
        self._chunk_vectors[_key(model_path)] = np.stack([stored[c] for c in self.chunk_ids])
        return True

    def known_vectors(self, model_path: str | Path) -> dict[int, tuple[str, np.ndarray]]:
        """Chunk id → (text, vector) of an evaluated model, for building its index without
        encoding the knowledge base a second time."""
        chunk_vectors = self._chunk_vectors.get(_key(model_path))
        if chunk_vectors is None:
            return {}
        return {
            chunk_id: (text, chunk_vectors[i])
            for i, (chunk_id, text) in enumerate(zip(self.chunk_ids, self.chunk_texts, strict=True))
        }

    def _encode(
        self, model_path: str | Path, texts: list[str], what: str, *, step: str | None = None
    ) -> np.ndarray:
        model = self._encoder(model_path)
        if not texts:
            return np.zeros((0, model.st.get_embedding_dimension()), dtype=np.float32)
        with self.log.timing(_key(model_path), what, model.backend, len(texts), step=step):
            return model.embed(texts, self.batch_size)

    def rerank(
        self,
        ranked: dict[str, list[tuple[int, float]]],
        reranker_path: str | Path,
        rerank_k: int,
        cosine_weight: float = 1.0,
    ) -> dict[str, list[tuple[int, float]]]:
        """The reranker reorders each query's head; the tail keeps the retriever's order."""
        model = self._cross_encoder(reranker_path)
        texts = self.texts
        by_id = {q.query_id: q.text for q in self.queries}
        pairs = [(by_id[q], texts[c]) for q, hits in ranked.items() for c, _ in hits[:rerank_k]]
        with self.log.timing(_key(reranker_path), "pairs", model.backend, len(pairs)):
            scores = iter(self._cross_scores(model, pairs))
        reranked = {}
        for query_id, hits in ranked.items():
            ids = [c for c, _ in hits[:rerank_k]]
            cross = [next(scores) for _ in ids]
            blended = blend(cross, [cosine for _, cosine in hits[:rerank_k]], cosine_weight)
            head = sorted(zip(ids, blended, strict=True), key=lambda hit: -hit[1])
            reranked[query_id] = head + hits[rerank_k:]
        return reranked

    def _cross_scores(
        self, model: encoders.EncoderModel, pairs: list[tuple[str, str]]
    ) -> list[float]:
        if not pairs:
            return []
        return [float(s) for s in model.score(pairs, self.batch_size)]


def _key(model_path: str | Path) -> str:
    return str(Path(model_path).resolve())


def to_run(ranked: dict[str, list[tuple[int, float]]]) -> Run:
    """A run whose scores follow the given order exactly: rank-based, so a reranked head (on a
    cross-encoder's scale) sits above a tail of cosines and ties cannot reorder anything."""
    return {
        query_id: {
            str(chunk_id): float(len(hits) - rank) for rank, (chunk_id, _) in enumerate(hits)
        }
        for query_id, hits in ranked.items()
    }
