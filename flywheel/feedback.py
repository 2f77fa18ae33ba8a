"""The four feedback signals as values: what a surface records when an agent clicks.

A click fills a *slot*: one agent's answer to one question about one draft set (which draft
is better; was it used; is this chunk relevant; what was missing). A later click in the same
slot supersedes the earlier one; both stay as events.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from flywheel.exceptions import InvalidFeedback

SENT_REPLY = "sent_reply"  # the slot of an adoption read from the reply sent, not a click
Kind = Literal["preference", "adoption", "relevance", "missing_knowledge"]
VALUES: dict[str, tuple[str, ...]] = {
    "preference": ("A", "B", "tie", "both_bad"),
    "adoption": ("as_is", "edited", "not_used"),
    "relevance": ("relevant", "not_relevant"),
    "missing_knowledge": ("article", "url", "note"),
}


@dataclass(frozen=True)
class Feedback:
    """One click, before it is stored."""

    kind: Kind
    value: str
    draft_set_id: int
    agent_id: str
    clicked_at: datetime
    subject: str = ""
    draft_id: int | None = None
    chunk_ids: tuple[int, ...] = ()
    rationale: dict[str, Any] = field(default_factory=dict)
    source: str = "slack"
    source_ref: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in VALUES:
            raise InvalidFeedback(f"unknown feedback kind {self.kind!r}")
        if self.value not in VALUES[self.kind]:
            raise InvalidFeedback(f"{self.kind} cannot be {self.value!r}")
        if not self.agent_id:
            raise InvalidFeedback("feedback needs the agent who gave it")

    def same_answer(self, other: StoredFeedback) -> bool:
        """A repeat of the current answer (a double click) changes nothing; nor does a repeat
        that says less than it (the adoption button clicked again after its modal gave the
        reasons: the reasons stand)."""
        return (
            other.value == self.value
            and other.draft_id == self.draft_id
            and tuple(other.chunk_ids) == self.chunk_ids
            and self.rationale.items() <= other.rationale.items()
        )

    def idempotency_key(self, supersedes: int | None) -> str:
        """Equal for the same answer given on top of the same earlier one, and only then."""
        answer = json.dumps(
            [self.value, self.draft_id, list(self.chunk_ids), self.rationale],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(answer.encode()).hexdigest()[:24]
        slot = f"{self.draft_set_id}:{self.kind}:{self.subject}:{self.agent_id}"
        return f"{self.source}:{slot}:{supersedes or 0}:{digest}"


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    kind: str
    value: str
    ticket_ref: str
    draft_set_id: int
    draft_ids: list[int]
    draft_id: int | None
    chunk_ids: list[int]
    subject: str
    agent_id: str
    rationale: dict[str, Any]
    shown_at: datetime
    clicked_at: datetime
    supersedes: int | None
    idempotency_key: str


@dataclass(frozen=True)
class AgentStats:
    """One agent's own figures, for their App Home."""

    events: dict[str, int]
    draft_sets: int
    adoptions: dict[str, int]
    last_click: datetime | None

    @property
    def adoption_rate(self) -> float | None:
        """Share of adoption answers that used a draft (as is or edited)."""
        total = sum(self.adoptions.values())
        used = self.adoptions.get("as_is", 0) + self.adoptions.get("edited", 0)
        return used / total if total else None


MODALS = ("adoption", "missing_knowledge")


@dataclass(frozen=True)
class Dismissal:
    """A modal the agent closed without sending it: the click it was opened for stands
    without its reasons. Often-closed modals are a sign of annotation fatigue."""

    modal: str
    draft_set_id: int
    agent_id: str
    view_id: str
    closed_at: datetime

    def __post_init__(self) -> None:
        if self.modal not in MODALS:
            raise InvalidFeedback(f"no {self.modal!r} modal is ours")
        if not (self.agent_id and self.view_id):
            raise InvalidFeedback("a closed modal needs the agent and the view")
