"""Where finished drafts go. The Slack bot implements ``DraftHandoff``; until it is wired,
``RecordOnly`` keeps the drafts in the database, where the Slack side can pick them up."""

from __future__ import annotations

from typing import Protocol

from rag.models import ReadyDrafts


class DraftHandoff(Protocol):
    def deliver(self, ready: ReadyDrafts) -> bool:
        """Show the drafts; True when delivered. Must be idempotent per ``request_id``."""
        ...


class RecordOnly:
    """Keeps the drafts recorded and reports them as not delivered anywhere."""

    def deliver(self, ready: ReadyDrafts) -> bool:
        return False
