"""Split documents into retrievable chunks with langchain-text-splitters."""

from __future__ import annotations

import hashlib
import json

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from rag.models import SourceDocument


class Chunker:
    """Markdown-aware splitting for Markdown, paragraph/sentence splitting for the rest."""

    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        overlap = min(chunk_overlap, chunk_size // 2)
        self._markdown = RecursiveCharacterTextSplitter.from_language(
            Language.MARKDOWN, chunk_size=chunk_size, chunk_overlap=overlap
        )
        self._plain = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size,
            chunk_overlap=overlap,
            separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
        )

    def split(self, document: SourceDocument) -> list[str]:
        is_markdown = document.metadata.get("format") in ("md", "markdown")
        splitter = self._markdown if is_markdown else self._plain
        return [c.strip() for c in splitter.split_text(document.body) if c.strip()]


def content_hash(document: SourceDocument) -> str:
    """What decides whether a document changed: everything that reaches chunks or citations."""
    fields: list[str | None] = [document.title, document.body, document.url, document.locale]
    if document.audience != "public" or document.brand is not None:
        # only when set, so documents synced before audiences and brands keep their hash
        fields += [document.audience, document.brand]
    payload = json.dumps(fields, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def embedding_text(title: str, chunk: str) -> str:
    """Chunks are embedded under their article's title, which often names the topic."""
    return f"{title}\n{chunk}"
