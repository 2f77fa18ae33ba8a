"""Second stage: reorder retrieved chunks. Untrained installs keep the cosine order."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import Protocol

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


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder read from a local folder."""

    def __init__(self, path: str, *, setting: str = "AITL_RERANKER_MODEL") -> None:
        self.path = local_model_dir(path, setting)
        self.name = f"cross-encoder:{self.path}"

    @cached_property
    def model(self):
        from sentence_transformers import CrossEncoder

        return CrossEncoder(str(self.path), device="cpu", local_files_only=True)

    def rerank(self, query: str, chunks: Sequence[RetrievedChunk]) -> list[RetrievedChunk]:
        if not chunks:
            return []
        pairs = [(query, f"{c.title}\n{c.text}") for c in chunks]
        scores = self.model.predict(pairs, show_progress_bar=False, convert_to_numpy=True)
        scored = [
            dataclasses.replace(c, rerank_score=float(s))
            for c, s in zip(chunks, scores.reshape(len(chunks), -1)[:, 0], strict=True)
        ]
        return sorted(scored, key=lambda c: -(c.rerank_score or 0.0))
