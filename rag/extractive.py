"""The default drafter: a readable reply assembled from the best passages, no LLM needed."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from rag import attachments as attached
from rag import links
from rag.generation import DraftInput, GeneratedDraft, greeting
from rag.models import RetrievedChunk
from rag.prompts import PromptLibrary

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yes",
        "hi",
        "hello",
        "thanks",
        "please",
    ]
)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry meaning (lowercase, no stopwords, two letters or more)."""
    return _words(text)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1}


def readable_lines(text: str) -> list[str]:
    """Readable units of a passage: list items whole, prose split in sentences. Headings and
    the sentence fragment a chunk may start with (chunk overlap) are left out."""
    units: list[str] = []
    for raw in text.splitlines():
        line = _without_emphasis(raw.strip())
        if not line or line.startswith("#") or set(line) <= set("-|: "):
            continue
        if is_item(line):
            units.append(line)
            continue
        units.extend(sentences(line))
    if units and not re.match(r"^[A-Z0-9\"'(\[]", units[0]) and not is_item(units[0]):
        units = units[1:]
    return units


ABBREVIATION = re.compile(r"\b(a\.m|p\.m|e\.g|i\.e|etc|approx|no|vs|Mr|Ms|Dr)\.$", re.I)


def sentences(line: str) -> list[str]:
    """Sentence split that does not break after "2 p.m." or "e.g.", nor inside a link."""
    protected = links.protect(line)
    merged: list[str] = []
    for piece in (protected.restore(p).strip() for p in _SENTENCE_END.split(protected.text)):
        if merged and ABBREVIATION.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {piece}"
        elif piece:
            merged.append(piece)
    return merged


_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")


def _without_emphasis(line: str) -> str:
    """Bold markers dropped, links untouched (a URL may hold ``__``)."""
    protected = links.protect(line)
    return protected.restore(_EMPHASIS.sub(lambda m: m.group(1) or m.group(2), protected.text))


class ExtractiveDrafter(Runnable[DraftInput, GeneratedDraft]):
    """Picks the passage lines that share most words with the ticket, in reading order."""

    def __init__(self, prompts: PromptLibrary) -> None:
        self.prompts = prompts

    def invoke(
        self, input: DraftInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GeneratedDraft:
        variant = input.variant
        query_words = _words(input.ticket.query_text())
        passages = input.passages[: variant.max_passages]
        # no sentence asks for a file the customer already attached
        sent = attached.sent_kinds(attached.listed(input.ticket.attachments))
        picked = self._pick(passages, query_words, variant.max_sentences, already_sent=sent)
        used = tuple(p for p in passages if picked.get(p.chunk_id))
        parts = [greeting(self.prompts, input.ticket.subject)]
        if used:
            parts.append(self._body(used, picked, lead_in=len(used) > 1))
        else:
            parts.append(
                "I could not find an article that covers this yet, so I am checking with the "
                "team and will get back to you shortly."
            )
        parts.append(self.prompts.text("closing.txt"))
        producer = {
            "backend": "extractive",
            "variant": variant.name,
            "max_passages": variant.max_passages,
            "max_sentences": variant.max_sentences,
        }
        return GeneratedDraft(text="\n\n".join(parts), cited=used, producer=producer)

    @staticmethod
    def _pick(
        passages, query_words: set[str], budget: int, already_sent: frozenset[str] = frozenset()
    ) -> dict[int, list[str]]:
        """Best units across passages by word overlap, each passage keeping its own order;
        units asking for a kind of file in ``already_sent`` are left out."""
        scored = []
        seen: set[str] = set()
        for rank, passage in enumerate(passages):
            for position, unit in enumerate(readable_lines(passage.text)):
                if unit in seen:
                    continue  # overlapping chunks of one article repeat lines
                seen.add(unit)
                if attached.asks_for_sent(unit, already_sent):
                    continue
                overlap = len(_words(unit) & query_words)
                # earlier passages and earlier lines break ties: they are usually the answer
                scored.append((overlap, -rank, -position, passage.chunk_id, unit))
        scored.sort(reverse=True)
        chosen = [s for s in scored if s[0] > 0][:budget] or scored[: min(budget, 2)]
        picked: dict[int, list[tuple[int, str]]] = {}
        for _, _, neg_position, chunk_id, unit in chosen:
            picked.setdefault(chunk_id, []).append((-neg_position, unit))
        return {cid: [u for _, u in sorted(units)] for cid, units in picked.items()}

    @staticmethod
    def _body(used: tuple[RetrievedChunk, ...], picked: dict[int, list[str]], lead_in: bool) -> str:
        """One section per article (its chunks merged), titled when several articles are used."""
        articles: dict[int, list[RetrievedChunk]] = {}
        for passage in used:
            articles.setdefault(passage.document_id, []).append(passage)
        lead_in = len(articles) > 1
        sections = []
        for passages in articles.values():
            lines = [
                line
                for p in sorted(passages, key=lambda p: p.chunk_id)
                for line in picked[p.chunk_id]
            ]
            text = "\n".join(lines) if any(is_item(line) for line in lines) else " ".join(lines)
            if lead_in:
                text = f"{passages[0].title}:\n{text}"
            if passages[0].url:
                text += f"\nMore detail: {passages[0].url}"
            sections.append(text)
        return "\n\n".join(sections)


def is_item(line: str) -> bool:
    return bool(re.match(r"^([-*•]|\d+[.)])\s+", line))
