"""Plain values that flow through the pipeline; no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class SourceDocument:
    """A knowledge article as read from a file or an API, before chunking."""

    source: str
    external_id: str
    title: str
    body: str
    updated_at: datetime
    url: str | None = None
    locale: str = "en"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One earlier message of a ticket's thread."""

    author: Literal["customer", "agent"]
    body: str
    public: bool = True


@dataclass(frozen=True)
class Ticket:
    """What the pipeline drafts a reply to."""

    subject: str
    body: str
    thread: tuple[Message, ...] = ()
    external_id: str | None = None

    def query_text(self, max_thread_messages: int = 2) -> str:
        """The text to retrieve with: subject, body and the latest public customer turns.

        Internal notes never enter the query, since drafts are customer-facing.
        """
        recent = [m.body for m in self.thread if m.public and m.author == "customer"]
        parts = [self.subject, self.body, *recent[-max_thread_messages:]]
        return "\n".join(p.strip() for p in parts if p and p.strip())


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk found for a ticket, with its scores at each stage."""

    chunk_id: int
    document_id: int
    title: str
    text: str
    url: str | None
    source: str
    external_id: str
    similarity: float
    rerank_score: float | None = None

    @property
    def score(self) -> float:
        return self.similarity if self.rerank_score is None else self.rerank_score


@dataclass(frozen=True)
class Draft:
    """One candidate reply, the chunks it cites, and what produced it."""

    label: Literal["A", "B"]
    text: str
    citations: tuple[RetrievedChunk, ...]
    producer: dict[str, Any]


@dataclass(frozen=True)
class DraftSet:
    """The two drafts for one ticket, and everything retrieval saw."""

    ticket: Ticket
    retrieved: tuple[RetrievedChunk, ...]
    context: tuple[RetrievedChunk, ...]
    drafts: tuple[Draft, Draft]
    timings_ms: dict[str, float]
