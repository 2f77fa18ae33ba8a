"""Plain values that flow through the pipeline, and the hand-off values the rooms above pass
to each other through the composition root (a ticket's reference, drafts ready to show); no
I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rag.store import StoredDraft

ZENDESK = "zendesk"


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
    # who may read it: "public" may be quoted to customers; "internal" is for agents only
    audience: Literal["public", "internal"] = "public"
    # the brand whose Help Center holds it; None: every brand's knowledge
    brand: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file attached to a ticket's comment, as the helpdesk listed it (never its bytes)."""

    file_name: str
    content_type: str | None = None
    size_bytes: int | None = None
    url: str | None = None
    inline: bool = False
    author: Literal["customer", "agent"] = "customer"


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
    # the ticket's brand (knowledge is restricted to it) and the requester's locale (preferred)
    brand: str | None = None
    locale: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # what a macro's placeholders render to for this ticket: "ticket.requester.name" → "Ana"
    placeholders: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

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
    # "internal": for the agent's eyes only, never pasted into a customer-facing draft
    audience: str = "public"
    locale: str | None = None

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


@dataclass(frozen=True)
class TicketRef:
    """Which helpdesk ticket a draft set answers, stored as text: ``zendesk:123``."""

    source: str
    id: str

    def __str__(self) -> str:
        return f"{self.source}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> TicketRef:
        source, _, ticket_id = text.partition(":")
        return cls(source, ticket_id)

    @classmethod
    def zendesk(cls, ticket_id: int) -> TicketRef:
        return cls(ZENDESK, str(ticket_id))

    @property
    def zendesk_id(self) -> int | None:
        """The Zendesk ticket number, or None for a ticket from elsewhere (``/aitl ask``)."""
        return int(self.id) if self.source == ZENDESK and self.id.isdigit() else None


@dataclass(frozen=True)
class TicketHeader:
    """What a surface shows of the ticket above its drafts."""

    ref: TicketRef
    subject: str
    requester: str | None
    priority: str | None
    status: str | None
    url: str
    assignee_email: str | None
    channel: str | None = None  # via.channel: email, web, api, ...
    form_id: int | None = None
    ticket_type: str | None = None  # question, incident, problem, task
    locale: str | None = None  # the requester's
    brand: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class ReadyDrafts:
    """One ticket revision's drafts, ready to show: the connector hands them to a surface
    (the Slack bot) through the root, neither importing the other."""

    request_id: int
    ticket: TicketHeader
    draft_set_id: int
    drafts: list[StoredDraft]
    channel: str | None


@dataclass(frozen=True)
class SentReply:
    """A reply an agent sent in the helpdesk after drafts were shown, compared with them: how
    it used the drafts, handed by the connector to the flywheel as feedback of its own."""

    ticket_ref: str
    draft_set_id: int
    author: str  # the helpdesk's id of the agent who sent it
    sent_at: datetime
    body: str  # PII redacted
    closest_label: str
    adoption: str  # 'as_is' | 'edited' | 'not_used'
    similarity: dict[str, float]
    comment_id: int
