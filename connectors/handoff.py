"""Where finished drafts go. The Slack bot implements ``DraftHandoff``; until it is wired,
``RecordOnly`` keeps the drafts in the database, where the Slack side can pick them up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from connectors.store import StoredComment, StoredTicket
from rag.store import ChunkRef, StoredDraft


@dataclass(frozen=True)
class ReadyDrafts:
    """Everything a surface needs to show the drafts for one ticket revision."""

    request_id: int
    ticket: StoredTicket
    conversation: list[StoredComment]
    draft_set_id: int
    drafts: list[StoredDraft]
    cited: dict[int, ChunkRef]
    channel: str | None
    ticket_url: str


class DraftHandoff(Protocol):
    def deliver(self, ready: ReadyDrafts) -> bool:
        """Show the drafts; True when delivered. Must be idempotent per ``request_id``."""
        ...


class RecordOnly:
    """Keeps the drafts recorded and reports them as not delivered anywhere."""

    def deliver(self, ready: ReadyDrafts) -> bool:
        return False
