"""Training examples as the trainers read them, built from judged feedback events.

Each carries a weight (the agent's estimated reliability) and the events it came from, so a
run can say which clicks trained which model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrievalExample:
    """A ticket and a chunk that answers it, with chunks judged not relevant for the same ticket.

    Texts are what the retriever embeds: the ticket's query text, and each chunk as
    ``rag.chunking.embedding_text(title, text)``.
    """

    query_id: str
    query: str
    positive_id: int
    positive: str
    negatives: tuple[str, ...] = ()
    weight: float = 1.0
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RerankExample:
    """A (ticket, chunk) pair with a relevance label in [0, 1]."""

    query_id: str
    query: str
    chunk_id: int
    passage: str
    label: float
    weight: float = 1.0
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (the ticket with its retrieved context) and a preferred and a rejected reply.

    ``prompt`` is the user message and ``system`` the system message the drafter sent: the
    trainer lays them out with the model's chat template, exactly as drafting does.
    """

    prompt: str
    chosen: str
    rejected: str
    weight: float = 1.0
    event_ids: tuple[int, ...] = ()
    system: str = ""


@dataclass(frozen=True)
class TrainedModel:
    """What a trainer leaves behind: a model folder and what it took to make it."""

    kind: str  # 'retriever', 'reranker', 'generator'
    path: str
    examples: int
    steps: int
    train_loss: float | None
    seconds: float
