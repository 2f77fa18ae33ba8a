"""Ticket → top-k from pgvector → rerank → drafts A and B, each citing what it used."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Literal

from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel

from rag import exceptions, placeholders
from rag.generation import DraftInput, DraftVariant, GeneratedDraft
from rag.models import Draft, DraftSet, RetrievedChunk, Ticket
from rag.rerank import Reranker
from rag.retrieve import Retriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftMaker:
    """One side of the pair: a generator, its settings, and its role in the A/B test."""

    generator: Runnable[DraftInput, GeneratedDraft]
    variant: DraftVariant
    role: Literal["champion", "challenger", "variant"]
    # who drafted, as the online duel counts it: a registry version, or the shipped
    # "extractive" / "llm-base" / AITL_GENERATOR backend
    name: str = ""


class DraftPipeline:
    def __init__(
        self,
        retriever: Retriever,
        reranker: Reranker,
        makers: tuple[DraftMaker, DraftMaker],
        *,
        retrieve_k: int,
        context_k: int,
        styles: tuple[DraftMaker, DraftMaker] | None = None,
        challenger_share: float = 1.0,
    ) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.makers = makers
        self.styles = styles  # what tickets outside the challenger's share get
        self.challenger_share = challenger_share
        self.challenger_error: str | None = None
        self.retrieve_k = retrieve_k
        self.context_k = context_k

    def warm(self) -> None:
        """Load the encoder and the reranker and run each once: the first agent's search (Slack
        gives an options request 3 s) or draft then does not wait for a model to load."""
        found = self.retriever.search("warm up", 1)
        self.reranker.rerank("warm up", found)
        for maker in self.makers:
            warm = getattr(maker.generator, "warm", None)
            if warm is None:
                continue
            try:
                warm()
            except exceptions.RagError as exc:
                if maker.role != "challenger" or self.styles is None:
                    raise
                self._retire_challenger(exc)

    def draft(self, ticket: Ticket) -> DraftSet:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = ticket.query_text()
        retrieved = self.retriever.search(
            query, self.retrieve_k, brand=ticket.brand, locale=ticket.locale
        )
        timings["retrieve"] = _ms(started)
        mark = time.perf_counter()
        context = tuple(self.reranker.rerank(query, retrieved)[: self.context_k])
        timings["rerank"] = _ms(mark)
        mark = time.perf_counter()
        makers = self._slots(ticket)
        passages = quotable(context)
        try:
            outputs = _both(makers, ticket, passages)
        except exceptions.RagError as exc:
            if "challenger" not in {m.role for m in makers} or self.styles is None:
                raise
            self._retire_challenger(exc)
            makers = self.makers  # the champion's two styles, from now on
            outputs = _both(makers, ticket, passages)
        timings["generate"] = _ms(mark)
        timings["total"] = _ms(started)
        shared = {
            **self.retriever.describe(),
            "reranker": self.reranker.name,
            "retrieve_k": self.retrieve_k,
            "context_k": self.context_k,
        }
        drafts = (
            self._draft("A", outputs["a"], makers[0], shared, ticket),
            self._draft("B", outputs["b"], makers[1], shared, ticket),
        )
        return DraftSet(ticket, tuple(retrieved), context, drafts, timings)

    def _slots(self, ticket: Ticket) -> tuple[DraftMaker, DraftMaker]:
        """Champion and challenger take slot A by turns, so position bias cancels out, on
        ``challenger_share`` of the tickets; the turn and the share are hashes of the ticket,
        so retries of one ticket draft alike."""
        first, second = self.makers
        if {first.role, second.role} != {"champion", "challenger"}:
            return first, second
        key = ticket.external_id or ticket.query_text()
        digest = hashlib.sha256(key.encode()).digest()
        if self.styles is not None and int.from_bytes(digest[1:5]) / 2**32 >= self.challenger_share:
            return self.styles
        if digest[0] % 2:
            return second, first
        return first, second

    def _retire_challenger(self, error: Exception) -> None:
        """The challenger failed (a corrupt model, an adapter for another base): the champion
        drafts both replies from now on, and the error says what to fix."""
        log.error("the challenger generator failed and is left out of drafts A/B: %s", error)
        self.challenger_error = str(error)
        self.makers, self.styles = self.styles, None

    @staticmethod
    def _draft(
        label, output: GeneratedDraft, maker: DraftMaker, shared: dict, ticket: Ticket
    ) -> Draft:
        """Every generator's text passes here: its Liquid placeholders are rendered from the
        ticket or removed (rag/placeholders.py), so none reaches an agent, or a reply, raw."""
        rendered = placeholders.render(output.text, ticket.placeholders)
        producer = {**shared, **output.producer, "role": maker.role}
        if rendered.changed:
            producer["placeholders"] = rendered.record()
        if maker.name:
            producer["generator"] = maker.name
        return Draft(label=label, text=rendered.text, citations=output.cited, producer=producer)


def quotable(context: tuple[RetrievedChunk, ...]) -> tuple[RetrievedChunk, ...]:
    """What a generator may draft from: public passages only. Internal (agent-only) ones stay
    in the draft set's context, so the card shows them to the agent, but no backend is given
    text it could paste into a customer-facing reply."""
    return tuple(c for c in context if c.audience == "public")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _both(makers: tuple[DraftMaker, DraftMaker], ticket: Ticket, context) -> dict:
    return RunnableParallel(
        a=_bound(makers[0], ticket, context), b=_bound(makers[1], ticket, context)
    ).invoke(None, config={"run_name": "aitl.drafts"})


def _bound(maker: DraftMaker, ticket: Ticket, context) -> Runnable:
    """The maker's generator fed with its own input, so both sides can run in parallel."""
    request = DraftInput(ticket, context, maker.variant)
    return RunnableLambda(lambda _: request) | maker.generator
