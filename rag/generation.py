"""What every generator backend takes and returns, so the pipeline treats them alike.

A backend is a LangChain ``Runnable[DraftInput, GeneratedDraft]``; the two drafts of a
ticket run side by side through ``RunnableParallel``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rag import attachments as attached
from rag import links
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


PASSAGE_CHARS = 900  # per passage: a small model loses the ticket behind longer context


def llm_messages(prompts: PromptLibrary, request: DraftInput) -> dict[str, str]:
    """The system and user messages every LLM backend drafts from (and is trained on).

    Passages come as clean text (headings and markup dropped, as the extractive drafter reads
    them), at most ``variant.max_passages`` of them, each cut to ``PASSAGE_CHARS``: measured
    on SmolLM2-135M, numbered passages and long markdown drew invented text, clean short
    articles drew replies made of the articles' own steps (see prompts/README.md).
    """
    from rag.extractive import readable_lines

    ticket = request.ticket
    earlier = "\n".join(f"- {m.author}: {m.body.strip()}" for m in ticket.thread if m.public)
    passages = "\n\n".join(
        f"{p.title}\n" + links.cut("\n".join(readable_lines(p.text)), PASSAGE_CHARS)
        for p in request.passages[: request.variant.max_passages]
    )
    user = prompts.render(
        "draft_user.txt",
        ticket=" ".join(ticket.query_text().split()),
        subject=ticket.subject.strip(),
        body=ticket.body.strip(),
        thread=f"Earlier messages:\n{earlier}\n\n" if earlier else "",
        attachments=attachments_note(prompts, ticket),
        passages=passages or "(no article found)",
        style=prompts.text(request.variant.style_prompt),
    )
    return {"system": prompts.text("draft_system.txt"), "user": user}


def attachments_note(prompts: PromptLibrary, ticket: Ticket) -> str:
    """What the customer attached (``draft_attachments.txt``), so the reply does not ask for
    it again; empty without attachments, which leaves the prompt as it was before them."""
    files = attached.listed(ticket.attachments)
    if not files:
        return ""
    return prompts.render("draft_attachments.txt", files=attached.summary(files, sep=", ")) + "\n\n"


def greeting(prompts: PromptLibrary, subject: str) -> str:
    """The reply's opening (``greeting.txt``); a ticket with no subject (a chat, an API
    ticket) loses the lines that would name it as "" rather than show empty quotes."""
    subject = subject.strip()
    text = prompts.render("greeting.txt", subject=subject)
    if subject:
        return text
    lines = [line for line in text.splitlines() if '""' not in line]
    return "\n".join(lines).strip()


_SIGN_OFF = re.compile(
    r"(\n\s*(best|kind|warm)( regards)?,?|\n\s*(regards|sincerely|cheers|thanks|thank you),?"
    r"|\n\s*the support team)+\s*$",
    re.IGNORECASE,
)


def without_sign_off(text: str) -> str:
    """``text`` without a sign-off at its end (the closing adds one of its own)."""
    return _SIGN_OFF.sub("", "\n" + text).strip()


def chat_prompt(tokenizer: Any, system: str, user: str) -> str:
    """The text a local causal LM reads: its chat template, or a plain layout without one.
    Drafting and training both use it, so the adapter learns the prompt it is served."""
    if getattr(tokenizer, "chat_template", None):
        chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{user}\n\nReply:\n"


_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")  # not a link whose text is a number


def cited_passages(text: str, passages: tuple[RetrievedChunk, ...]) -> tuple[RetrievedChunk, ...]:
    """The passages an LLM cited by number; all of them if it cited none it was given."""
    numbers = sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= len(passages)})
    return tuple(passages[n - 1] for n in numbers) if numbers else passages
