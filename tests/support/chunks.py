"""Retrieved chunks built by hand, for tests of the stages after retrieval."""

from __future__ import annotations

from rag.models import RetrievedChunk


def make_chunk(
    chunk_id: int,
    document_id: int,
    title: str,
    text: str,
    similarity: float = 0.5,
    url: str | None = None,
) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=chunk_id,
        document_id=document_id,
        title=title,
        text=text,
        url=url,
        source="tests",
        external_id=f"doc-{document_id}",
        similarity=similarity,
    )
