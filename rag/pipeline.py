"""Ticket → top-k from pgvector → rerank → drafts A and B, each citing what it used."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel

from rag import exceptions, placeholders
from rag.generation import DraftInput, DraftVariant, GeneratedDraft
from rag.memory import (
    REUSED_REPLY,
    FeedbackMemory,
    Fusion,
    MemoryVote,
    ReplyMemory,
    ReusedReply,
    fuse,
)
from rag.models import Draft, DraftSet, RetrievedChunk, Ticket
from rag.rerank import Reranker
from rag.retrieve import QueryVector, Retriever

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
        memory: FeedbackMemory | None = None,
        memory_weight: float = 0.3,
    ) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.makers = makers
        self.styles = styles  # what tickets outside the challenger's share get
        self.challenger_share = challenger_share
        self.challenger_error: str | None = None
        self.retrieve_k = retrieve_k
        self.context_k = context_k
        # what similar annotated tickets say of chunks (rag.memory); None: retrieval alone
        self.memory = memory
        self.memory_weight = memory_weight

    def warm(self) -> None:
        """Export the encoder and the reranker for their backend if not done yet (``rag.encoders``),
        load them and run each once: the first agent's search (Slack gives an options request
        3 s) or draft then does not wait for a model to load or an export to be built."""
        for part in (self.retriever, self.reranker):
            prepare = getattr(part, "prepare", None)  # stand-ins and the cosine order have none
            if prepare is not None:
                prepare()
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
        """Retrieve, rerank, draft A and B. With a feedback memory, the chunks similar
        annotated tickets vote for join the candidates, and the context is the top
        ``context_k`` by fused score: the reranker's score (the cosine without a reranker)
        plus ``memory_weight`` × the chunk's vote (``rag.memory.fused_score``); the drafts'
        producer["memory"] records what moved and on which remembered clicks. A memory that
        remembers replies may offer one from a near-identical ticket: it replaces the second
        of the champion's two styles (see ``_reuse``)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = ticket.query_text()
        vector = self.retriever.encode(query)
        retrieved = self.retriever.search_vector(
            vector, self.retrieve_k, brand=ticket.brand, locale=ticket.locale
        )
        timings["retrieve"] = _ms(started)
        mark = time.perf_counter()
        votes = self._votes(vector, ticket, retrieved)
        retrieved += votes.joined
        remembering = _ms(mark)
        mark = time.perf_counter()
        ranked = self.reranker.rerank(query, retrieved)
        timings["rerank"] = _ms(mark)
        mark = time.perf_counter()
        fusion = votes.fuse(ranked, self.memory_weight)
        context = fusion.ranked[: self.context_k]
        if self.memory is not None:
            timings["memory"] = round(remembering + _ms(mark), 2)
        mark = time.perf_counter()
        makers = self._slots(ticket)
        reuse = self._reuse(vector, ticket, makers)
        if reuse is not None:
            makers = reuse
        if isinstance(self.memory, ReplyMemory):
            timings["reuse"] = _ms(mark)
        mark = time.perf_counter()
        passages = quotable(context)
        try:
            outputs = _both(makers, ticket, passages)
        except exceptions.RagError as exc:
            roles = {m.role for m in makers}
            if reuse is not None or "challenger" not in roles or self.styles is None:
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
        if fusion.moves:
            shared["memory"] = fusion.moves
        drafts = (
            self._draft("A", outputs["a"], makers[0], shared, ticket),
            self._draft("B", outputs["b"], makers[1], shared, ticket),
        )
        return DraftSet(ticket, tuple(retrieved), context, drafts, timings)

    def _votes(
        self, vector: QueryVector, ticket: Ticket, retrieved: list[RetrievedChunk]
    ) -> _Votes:
        """What the memory says of this ticket's candidates, and the chunks it suggests that
        the retriever did not find. A memory that fails is logged and left out: the ticket is
        drafted as it would be without one."""
        if self.memory is None:
            return _Votes()
        try:
            votes = {
                v.chunk_id: v
                for v in self.memory.votes(
                    vector.vector, version=vector.version.version, brand=ticket.brand
                )
            }
            found = {c.chunk_id for c in retrieved}
            wanted = [i for i, v in votes.items() if v.score > 0 and i not in found]
            joined = self.retriever.chunks(vector, wanted, brand=ticket.brand, beside=retrieved)
        except Exception:  # any failure of the memory: the draft goes on without it
            log.exception("the feedback memory failed; drafting without it")
            return _Votes()
        return _Votes(votes, joined)

    def _slots(self, ticket: Ticket) -> tuple[DraftMaker, DraftMaker]:
        """Champion and challenger take slot A by turns, so position bias cancels out, on
        ``challenger_share`` of the tickets; the turn and the share are hashes of the ticket,
        so retries of one ticket draft alike."""
        first, second = self.makers
        if {first.role, second.role} != {"champion", "challenger"}:
            return first, second
        digest = _digest(ticket)
        if self.styles is not None and int.from_bytes(digest[1:5]) / 2**32 >= self.challenger_share:
            return self.styles
        if digest[0] % 2:
            return second, first
        return first, second

    def _reuse(
        self, vector: QueryVector, ticket: Ticket, makers: tuple[DraftMaker, DraftMaker]
    ) -> tuple[DraftMaker, DraftMaker] | None:
        """The champion's draft against the reply agents used on a near-identical ticket, when
        the memory offers one; None: the drafts as they were.

        Only on tickets drafted with the champion's two styles (no challenger in the online
        test, or the ticket outside its share): the reuse takes the second style's place and
        never a running test's duel, so that test gathers its evidence as fast as without it,
        and both the challenger and the reuse face the same draft, the champion's first style.
        The two take slot A by turns, as champion and challenger do. The reused reply cites
        its draft's passages as they stand now; when one no longer stands (deleted, changed,
        agent-only since the memory's last refresh) it is not offered. A memory that fails is
        logged and left out."""
        if not isinstance(self.memory, ReplyMemory) or {m.role for m in makers} != {"variant"}:
            return None
        champion = replace(makers[0], role="champion")
        try:
            reply = self.memory.reply(
                vector.vector,
                version=vector.version.version,
                brand=ticket.brand,
                champion=champion.name,
                other_than=ticket.external_id,
            )
            if reply is None:
                return None
            cited = self.retriever.chunks(vector, list(reply.citations), brand=ticket.brand)
        except Exception:  # any failure of the memory: the draft goes on without it
            log.exception("the feedback memory's replies failed; drafting without them")
            return None
        standing = [c for c in cited if c.audience == "public"]
        if {c.chunk_id for c in standing} != set(reply.citations):
            return None
        order = {c: n for n, c in enumerate(reply.citations)}
        reused = DraftMaker(
            _reused(reply, tuple(sorted(standing, key=lambda c: order[c.chunk_id]))),
            champion.variant,
            "challenger",
            REUSED_REPLY,
        )
        return (reused, champion) if _digest(ticket)[0] % 2 else (champion, reused)

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


@dataclass(frozen=True)
class _Votes:
    """The memory's votes on one ticket, by chunk id, and the chunks it brought in."""

    by_chunk: dict[int, MemoryVote] = field(default_factory=dict)
    joined: list[RetrievedChunk] = field(default_factory=list)

    def fuse(self, ranked: list[RetrievedChunk], weight: float) -> Fusion:
        if not self.by_chunk:
            return Fusion(tuple(ranked), {})
        return fuse(ranked, self.by_chunk, weight, {c.chunk_id for c in self.joined})


def _digest(ticket: Ticket) -> bytes:
    key = ticket.external_id or ticket.query_text()
    return hashlib.sha256(key.encode()).digest()


def _reused(reply: ReusedReply, cited: tuple[RetrievedChunk, ...]) -> Runnable:
    """The reused reply as a generator gives it; ``DraftPipeline._draft`` renders its
    placeholders with the new ticket's values, as for every draft."""
    draft = GeneratedDraft(reply.text, cited, {"reused_from": reply.record()})
    return RunnableLambda(lambda _: draft, name=REUSED_REPLY)


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
