"""Second stage: reorder retrieved chunks. Untrained installs keep the cosine order."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import Protocol

import numpy as np

from rag import encoders
from rag.chunking import embedding_text
from rag.embedding import local_model_dir
from rag.models import RetrievedChunk


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]: ...


class CosineOrder:
    """No cross-encoder yet: the retriever's cosine order is the ranking."""

    name = "cosine"

    def rerank(self, query: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        return sorted(chunks, key=lambda c: -c.similarity)


def blend(
    scores: Sequence[float], similarities: Sequence[float], cosine_weight: float
) -> list[float]:
    """The cross-encoder's scores with the retriever's cosines mixed in, each z-scored over the
    candidates so the two scales meet.

    A reranker trained on one week of clicks knows less than the retriever it reorders (trained
    on the same clicks, and on far more text before that); blending keeps what the retriever
    knows. ``cosine_weight`` 0 is the cross-encoder's order alone.
    """
    return [float(b) for b in _z(scores) + cosine_weight * _z(similarities)]


def _z(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    spread = array.std() if array.size else 0.0
    return (array - array.mean()) / spread if spread > 0 else np.zeros_like(array)


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder read from a local folder, blended with cosine."""

    def __init__(
        self,
        path: str,
        *,
        cosine_weight: float = 1.0,
        setting: str = "AITL_RERANKER_MODEL",
        backend: encoders.BackendSettings = encoders.TORCH,
    ) -> None:
        self.path = local_model_dir(path, setting)
        self.cosine_weight = cosine_weight
        self.name = f"cross-encoder:{self.path}"
        self.backend_settings = backend

    @cached_property
    def model(self) -> encoders.EncoderModel:
        return encoders.load(self.path, "cross-encoder", self.backend_settings)

    def prepare(self, *, prefer: Sequence[str] = ()) -> encoders.Choice:
        """Exports and checks the backend (seconds, once per model); later loads use it."""
        choice = encoders.prepare(self.path, "cross-encoder", self.backend_settings, prefer=prefer)
        self.__dict__.pop("model", None)
        return choice

    def rerank(self, query: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        if not chunks:
            return []
        pairs = [(query, embedding_text(c.title, c.text)) for c in chunks]
        blended = blend(
            self.model.score(pairs),
            [c.similarity for c in chunks],
            self.cosine_weight,
        )
        scored = [
            dataclasses.replace(c, rerank_score=s) for c, s in zip(chunks, blended, strict=True)
        ]
        return sorted(scored, key=lambda c: -(c.rerank_score or 0.0))
