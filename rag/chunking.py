"""Split documents into retrievable chunks with langchain-text-splitters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from rag import links
from rag.models import SourceDocument


class Chunker:
    """Markdown-aware splitting for Markdown, paragraph/sentence splitting for the rest.

    A link is never cut: each one stands as a single character while the text is split
    (counted at its full length), so a chunk holds a link whole or not at all, even one
    longer than the overlap or the chunk itself.
    """

    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        self._sizes = {
            "chunk_size": chunk_size,
            "chunk_overlap": min(chunk_overlap, chunk_size // 2),
        }

    def split(self, document: SourceDocument) -> list[str]:
        is_markdown = document.metadata.get("format") in ("md", "markdown")
        protected = links.protect(document.body)
        splitter = self._splitter(is_markdown, protected.weight)
        chunks = (protected.restore(c).strip() for c in splitter.split_text(protected.text))
        return [c for c in chunks if c]

    def _splitter(self, markdown: bool, length: Callable[[str], int]):
        if markdown:
            return RecursiveCharacterTextSplitter.from_language(
                Language.MARKDOWN, length_function=length, **self._sizes
            )
        return RecursiveCharacterTextSplitter(
            separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
            length_function=length,
            **self._sizes,
        )


def content_hash(document: SourceDocument) -> str:
    """What decides whether a document changed: everything that reaches chunks or citations."""
    # who may read it and its brand are labels, not content: a change is written in place
    # (``rag.store.relabel_documents``), with no re-embedding
    payload = json.dumps(
        [document.title, document.body, document.url, document.locale], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def embedding_text(title: str, chunk: str) -> str:
    """Chunks are embedded under their article's title, which often names the topic."""
    return f"{title}\n{chunk}"
