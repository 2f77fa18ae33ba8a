"""The feedback memory as retrieval sees it: what similar annotated tickets say of chunks,
and the reply an agent used on a near-identical one.

The memory itself (storage, judging, weighting) lives in the flywheel; the pipeline only asks
it for votes, and for a reply to reuse, through these protocols, so ``rag`` never imports
``flywheel``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.models import RetrievedChunk


@dataclass(frozen=True)
class MemoryVote:
    """What similar annotated tickets say of one chunk."""

    chunk_id: int
    score: float  # Σ similarity × weight × (+1 relevant/missing, −1 not relevant)
    tickets: int  # distinct similar tickets that voted
    agents: int  # distinct agents that voted
    entries: tuple[int, ...]  # the memory entries (feedback_memory ids) behind it


class FeedbackMemory(Protocol):
    def votes(
        self, query_vector: np.ndarray, *, version: str, brand: str | None = None
    ) -> list[MemoryVote]: ...


# the drafter name a reused reply is recorded under (producer["generator"]), so the online
# decision counts its duels against the champion as it counts a generator's
REUSED_REPLY = "similar-ticket-reply"


@dataclass(frozen=True)
class ReusedReply:
    """A reply agents used on a near-identical ticket, offered as a draft of its own kind.

    ``text`` is PII-redacted and holds Liquid placeholders where its own ticket had the
    customer's name, the ticket's number and the like, so rendering it for the new ticket
    (``rag.placeholders.render``) fills in the new ticket's values."""

    text: str
    ticket_ref: str  # the ticket it was sent on, as the card cites it: "zendesk:123"
    similarity: float  # cosine between the two tickets' queries
    entry: int  # its memory entry (memory_replies id)
    adopted_at: datetime
    agents: tuple[str, ...]  # who used it
    citations: tuple[int, ...] = ()  # the chunks its draft cited
    origin: str = "sent"  # 'sent' (as sent in the helpdesk) | 'edited' | 'as_is'

    def record(self) -> dict[str, Any]:
        """What the reused draft's producer keeps of it (and the card shows)."""
        return {
            "ticket_ref": self.ticket_ref,
            "similarity": round(self.similarity, 4),
            "entry": self.entry,
            "adopted_at": self.adopted_at.isoformat(),
            "agents": list(self.agents),
            "origin": self.origin,
        }


@runtime_checkable
class ReplyMemory(Protocol):
    """A feedback memory that also remembers replies (the flywheel's does)."""

    def reply(
        self,
        query_vector: np.ndarray,
        *,
        version: str,
        brand: str | None = None,
        champion: str = "",
        other_than: str | None = None,
    ) -> ReusedReply | None:
        """The reply of the nearest ticket at or above the reuse floor, if the reuse is on and
        not retired against ``champion``; never one of ``other_than``'s own (the ticket being
        drafted)."""
        ...


@dataclass(frozen=True)
class Fusion:
    """The candidates in their order once the memory has voted, and what it moved."""

    ranked: tuple[RetrievedChunk, ...]
    # chunk id (as text, as JSON keeps it) → how the memory moved it and on whose clicks:
    # {"score", "tickets", "agents", "entries", "moved": "up" | "down" | "joined", "rank"}
    moves: dict[str, dict[str, Any]]


def fused_score(chunk: RetrievedChunk, vote: MemoryVote | None, weight: float) -> float:
    """A candidate's score with the memory: the reranker's score (the cosine similarity when
    no reranker is trained) plus ``weight`` × the vote's score. A vote's score is Σ similarity
    × weight over the similar tickets that voted, positive for a boost and negative for a
    demotion, so a chunk marked relevant on several close tickets climbs and one marked not
    relevant sinks, by as much as the clicks behind it are close and trusted."""
    return chunk.score + weight * (vote.score if vote else 0.0)


def fuse(
    ranked: Sequence[RetrievedChunk],
    votes: Mapping[int, MemoryVote],
    weight: float,
    joined: Collection[int] = (),
) -> Fusion:
    """``ranked`` (the reranker's order, ``joined`` among them: chunks only the memory
    suggested) reordered by ``fused_score``.

    A move is recorded for each chunk its own vote moved: a joined chunk, a boosted one that
    rose among the chunks the retriever found, a demoted one that fell among them (a boosted
    chunk overtaken by a more boosted one did not move by its vote, and is not recorded).
    ``rank`` is [its rank without the memory, its rank with it], from 1 (None: joined)."""
    before = {c.chunk_id: n for n, c in enumerate(_found(ranked, joined), start=1)}
    order = sorted(
        enumerate(ranked),
        key=lambda item: (-fused_score(item[1], votes.get(item[1].chunk_id), weight), item[0]),
    )
    fused = tuple(chunk for _, chunk in order)
    after = {c.chunk_id: n for n, c in enumerate(_found(fused, joined), start=1)}
    moves: dict[str, dict[str, Any]] = {}
    for rank, chunk in enumerate(fused, start=1):
        vote = votes.get(chunk.chunk_id)
        if vote is None or vote.score == 0:
            continue
        was = before.get(chunk.chunk_id)
        if was is None:
            moved = "joined"
        elif vote.score > 0 and after[chunk.chunk_id] < was:
            moved = "up"
        elif vote.score < 0 and after[chunk.chunk_id] > was:
            moved = "down"
        else:
            continue
        moves[str(chunk.chunk_id)] = {
            "score": round(vote.score, 4),
            "tickets": vote.tickets,
            "agents": vote.agents,
            "entries": list(vote.entries),
            "moved": moved,
            "rank": [was, rank],
        }
    return Fusion(fused, moves)


def _found(chunks: Sequence[RetrievedChunk], joined: Collection[int]) -> list[RetrievedChunk]:
    return [c for c in chunks if c.chunk_id not in joined]
