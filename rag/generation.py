"""What every generator backend takes and returns, so the pipeline treats them alike.

A backend is a LangChain ``Runnable[DraftInput, GeneratedDraft]``; the two drafts of a
ticket run side by side through ``RunnableParallel``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rag.models import RetrievedChunk, Ticket
from rag.prompts import PromptLibrary


@dataclass(frozen=True)
class DraftVariant:
    """How one of the two drafts is generated when both come from the same model."""

    name: str
    style_prompt: str
    temperature: float
    max_passages: int
    max_sentences: int


CONCISE = DraftVariant("concise", "style_concise.txt", 0.2, max_passages=2, max_sentences=4)
DETAILED = DraftVariant("detailed", "style_detailed.txt", 0.8, max_passages=4, max_sentences=9)


@dataclass(frozen=True)
class DraftInput:
    ticket: Ticket
    passages: tuple[RetrievedChunk, ...]
    variant: DraftVariant


@dataclass(frozen=True)
class GeneratedDraft:
    text: str
    cited: tuple[RetrievedChunk, ...]
    producer: dict[str, Any] = field(default_factory=dict)


def llm_messages(prompts: PromptLibrary, request: DraftInput) -> dict[str, str]:
    """The system and user messages for an LLM backend, passages numbered from 1."""
    ticket = request.ticket
    thread = (
        "\n".join(f"- {m.author}: {m.body.strip()}" for m in ticket.thread if m.public) or "(none)"
    )
    passages = (
        "\n\n".join(f"[{i}] {p.title}\n{p.text}" for i, p in enumerate(request.passages, start=1))
        or "(no knowledge found)"
    )
    user = prompts.render(
        "draft_user.txt",
        subject=ticket.subject,
        body=ticket.body,
        thread=thread,
        passages=passages,
        style=prompts.text(request.variant.style_prompt),
    )
    return {"system": prompts.text("draft_system.txt"), "user": user}


_CITATION = re.compile(r"\[(\d{1,3})\]")


def cited_passages(text: str, passages: tuple[RetrievedChunk, ...]) -> tuple[RetrievedChunk, ...]:
    """The passages an LLM cited by number; all of them if it cited none it was given."""
    numbers = sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= len(passages)})
    return tuple(passages[n - 1] for n in numbers) if numbers else passages
