"""Ticket → top-k from pgvector → rerank → drafts A and B, each citing what it used."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Literal

from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel

from rag.generation import DraftInput, DraftVariant, GeneratedDraft
from rag.models import Draft, DraftSet, Ticket
from rag.rerank import Reranker
from rag.retrieve import Retriever


@dataclass(frozen=True)
class DraftMaker:
    """One side of the pair: a generator, its settings, and its role in the A/B test."""

    generator: Runnable[DraftInput, GeneratedDraft]
    variant: DraftVariant
    role: Literal["champion", "challenger", "variant"]


class DraftPipeline:
    def __init__(
        self,
        retriever: Retriever,
        reranker: Reranker,
        makers: tuple[DraftMaker, DraftMaker],
        *,
        retrieve_k: int,
        context_k: int,
    ) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.makers = makers
        self.retrieve_k = retrieve_k
        self.context_k = context_k

    def warm(self) -> None:
        """Load the encoder and the reranker and run each once: the first agent's search (Slack
        gives an options request 3 s) or draft then does not wait for a model to load."""
        found = self.retriever.search("warm up", 1)
        self.reranker.rerank("warm up", found)

    def draft(self, ticket: Ticket) -> DraftSet:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = ticket.query_text()
        retrieved = self.retriever.search(query, self.retrieve_k)
        timings["retrieve"] = _ms(started)
        mark = time.perf_counter()
        context = tuple(self.reranker.rerank(query, retrieved)[: self.context_k])
        timings["rerank"] = _ms(mark)
        mark = time.perf_counter()
        makers = self._slots(ticket)
        outputs = RunnableParallel(
            a=_bound(makers[0], ticket, context), b=_bound(makers[1], ticket, context)
        ).invoke(None, config={"run_name": "aitl.drafts"})
        timings["generate"] = _ms(mark)
        timings["total"] = _ms(started)
        shared = {
            **self.retriever.describe(),
            "reranker": self.reranker.name,
            "retrieve_k": self.retrieve_k,
            "context_k": self.context_k,
        }
        drafts = (
            self._draft("A", outputs["a"], makers[0], shared),
            self._draft("B", outputs["b"], makers[1], shared),
        )
        return DraftSet(ticket, tuple(retrieved), context, drafts, timings)

    def _slots(self, ticket: Ticket) -> tuple[DraftMaker, DraftMaker]:
        """Champion and challenger take slot A by turns, so position bias cancels out; the turn
        is a hash of the ticket, so retries of one ticket keep the same order."""
        first, second = self.makers
        if {first.role, second.role} != {"champion", "challenger"}:
            return first, second
        key = ticket.external_id or ticket.query_text()
        if hashlib.sha256(key.encode()).digest()[0] % 2:
            return second, first
        return first, second

    @staticmethod
    def _draft(label, output: GeneratedDraft, maker: DraftMaker, shared: dict) -> Draft:
        producer = {**shared, **output.producer, "role": maker.role}
        return Draft(label=label, text=output.text, citations=output.cited, producer=producer)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _bound(maker: DraftMaker, ticket: Ticket, context) -> Runnable:
    """The maker's generator fed with its own input, so both sides can run in parallel."""
    request = DraftInput(ticket, context, maker.variant)
    return RunnableLambda(lambda _: request) | maker.generator
