"""Retrieval steered by the feedback memory, through the real pipeline on the sample knowledge
base (real MiniLM, real pgvector): boosted chunks climb into the context, chunks only the memory
knows join it, demoted ones fall out, each draft says what moved and on whose clicks, and a
memory that fails, or none at all, leaves drafting as it was.

The memory here is a small class returning chosen votes: how the flywheel stores clicks and
tallies votes is tested in tests/flywheel/test_memory.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rag import factory, store
from rag.memory import MemoryVote
from rag.models import DraftSet, Ticket
from tests.conftest import make_settings

TICKET = Ticket(
    "Password reset email never shows up",
    "I forgot my password and no reset email is coming. Do the links expire?",
    external_id="T-memory",
)


class ChosenVotes:
    """A FeedbackMemory that answers the votes a test chose, and keeps what it was asked."""

    def __init__(self, *votes: MemoryVote) -> None:
        self.chosen = votes
        self.asked: list[tuple[np.ndarray, str, str | None]] = []

    def votes(self, query_vector, *, version: str, brand: str | None = None) -> list[MemoryVote]:
        self.asked.append((np.asarray(query_vector), version, brand))
        return list(self.chosen)


class BrokenMemory:
    def votes(self, query_vector, *, version: str, brand: str | None = None) -> list[MemoryVote]:
        raise RuntimeError("the memory's index is gone")


def vote(chunk_id: int, score: float, tickets: int = 3, agents: int = 2) -> MemoryVote:
    return MemoryVote(chunk_id, score, tickets, agents, entries=(11, 12, 13)[:tickets])


def drafted(settings, db, memory=None, ticket: Ticket = TICKET) -> DraftSet:
    return factory.pipeline(settings, db, memory=memory).draft(ticket)


def ids(chunks) -> list[int]:
    return [c.chunk_id for c in chunks]


def moves(result: DraftSet) -> dict:
    """producer["memory"] as both drafts record it (one retrieval serves both)."""
    first, second = (d.producer.get("memory") for d in result.drafts)
    assert first == second
    return first or {}


def chunks_of(db, external_id: str) -> list[int]:
    with db.connection() as conn:
        return sorted(store.live_chunk_ids_of_documents(conn, [external_id]))


@pytest.fixture
def baseline(kb_settings, kb_db) -> DraftSet:
    return drafted(kb_settings, kb_db)


def test_a_boosted_chunk_enters_the_context_ahead_of_the_others(kb_settings, kb_db, baseline):
    assert kb_settings.context_k == 5
    boosted = baseline.retrieved[7]  # found, eighth by cosine: outside the context
    top = baseline.context[0]
    # the top chunk gets a small boost too, yet is overtaken: its own vote did not move it
    memory = ChosenVotes(vote(boosted.chunk_id, 1.0), vote(top.chunk_id, 0.1))
    result = drafted(kb_settings, kb_db, memory)

    assert ids(result.context) == [boosted.chunk_id, *ids(baseline.context[:4])]
    assert boosted.chunk_id in {c.chunk_id for d in result.drafts for c in d.citations}
    assert moves(result) == {
        str(boosted.chunk_id): {
            "score": 1.0,
            "tickets": 3,
            "agents": 2,
            "entries": [11, 12, 13],
            "moved": "up",
            "rank": [8, 1],
        }
    }
    assert result.timings_ms["memory"] >= 0
    # asked once, with the vector the retriever searched with and under the live version
    [(vector, version, brand)] = memory.asked
    live, embedder = factory.embedding_versions(kb_settings, kb_db).live()
    assert version == live.version and brand is None
    assert np.allclose(vector, embedder.encode([TICKET.query_text()])[0], atol=1e-5)
    # the card reads the moves back from the stored drafts
    with kb_db.connection() as conn:
        set_id = store.save_draft_set(conn, "zendesk:1", "redacted", result)
        stored = store.drafts_of_set(conn, set_id)
    assert [d.producer["memory"][str(boosted.chunk_id)]["moved"] for d in stored] == ["up", "up"]


def test_a_chunk_the_retriever_did_not_find_joins_on_live_chunks_of_the_brand_only(
    kb_settings, kb_db, baseline
):
    gift_card = chunks_of(kb_db, "lumen-home-gift-cards.md")[0]
    other_brand = chunks_of(kb_db, "lumen-plus-free-trial.md")[0]
    retired = chunks_of(kb_db, "cancel-an-order.md")[0]
    demoted_elsewhere = chunks_of(kb_db, "failed-payment.md")[0]
    found = set(ids(baseline.retrieved))
    assert not {gift_card, other_brand, retired, demoted_elsewhere} & found
    with kb_db.connection() as conn:
        conn.execute(
            "UPDATE kb_documents SET brand = 'acme' WHERE external_id = 'lumen-plus-free-trial.md'"
        )
        conn.execute("UPDATE kb_chunks SET retired_at = now() WHERE id = %s", (retired,))
    memory = ChosenVotes(
        vote(gift_card, 2.0, tickets=2),
        vote(other_brand, 2.0),
        vote(retired, 2.0),
        vote(demoted_elsewhere, -2.0),
    )
    ticket = Ticket(TICKET.subject, TICKET.body, external_id="T-globex", brand="globex")
    result = drafted(kb_settings, kb_db, memory, ticket)

    assert memory.asked[0][2] == "globex"
    assert set(ids(result.retrieved)) == found | {gift_card}
    assert not {other_brand, retired, demoted_elsewhere} & set(ids(result.retrieved))
    joined = next(c for c in result.retrieved if c.chunk_id == gift_card)
    live, embedder = factory.embedding_versions(kb_settings, kb_db).live()
    with kb_db.connection() as conn:
        stored = store.stored_embeddings(conn, live.version, [gift_card])[gift_card]
    query = embedder.encode([ticket.query_text()])[0]
    cosine = float(stored @ query / np.linalg.norm(stored) / np.linalg.norm(query))
    assert joined.similarity == pytest.approx(cosine, abs=1e-4)
    # cosine + 0.3 × 2.0 beats every password article's cosine: first in the context
    assert ids(result.context) == [gift_card, *ids(baseline.context[:4])]
    assert moves(result) == {
        str(gift_card): {
            "score": 2.0,
            "tickets": 2,
            "agents": 2,
            "entries": [11, 12],
            "moved": "joined",
            "rank": [None, 1],
        }
    }


def test_a_demoted_chunk_drops_out_of_the_context_and_the_drafts(kb_settings, kb_db, baseline):
    demoted = baseline.context[0]
    cited = {c.chunk_id for d in baseline.drafts for c in d.citations}
    assert demoted.chunk_id in cited
    result = drafted(kb_settings, kb_db, ChosenVotes(vote(demoted.chunk_id, -1.0, tickets=2)))

    # cosine − 0.3 puts it below all twenty candidates; the sixth takes its place
    assert ids(result.context) == ids(baseline.retrieved[1:6])
    assert demoted.chunk_id not in {c.chunk_id for d in result.drafts for c in d.citations}
    assert moves(result)[str(demoted.chunk_id)]["moved"] == "down"
    assert moves(result)[str(demoted.chunk_id)]["rank"] == [1, 20]


def test_a_memory_that_fails_leaves_the_draft_as_without_memory(
    kb_settings, kb_db, baseline, caplog
):
    with caplog.at_level(logging.ERROR, logger="rag.pipeline"):
        result = drafted(kb_settings, kb_db, BrokenMemory())
    assert "the feedback memory failed" in caplog.text and "index is gone" in caplog.text
    assert ids(result.retrieved) == ids(baseline.retrieved)
    assert ids(result.context) == ids(baseline.context)
    assert [(d.text, d.producer) for d in result.drafts] == [
        (d.text, d.producer) for d in baseline.drafts
    ]


def test_without_memory_drafting_is_what_retrieval_and_reranking_alone_give(
    kb_settings, kb_db, baseline
):
    pipeline = factory.pipeline(kb_settings, kb_db)
    query = TICKET.query_text()
    alone = pipeline.reranker.rerank(query, pipeline.retriever.search(query, 20))
    assert pipeline.memory is None
    assert ids(baseline.context) == ids(alone[:5])
    assert ids(baseline.retrieved) == ids(alone)
    assert "memory" not in baseline.timings_ms
    assert not any("memory" in d.producer for d in baseline.drafts)
    # a memory with nothing to say changes nothing either
    silent = drafted(kb_settings, kb_db, ChosenVotes())
    assert ids(silent.context) == ids(baseline.context) and not moves(silent)


def test_the_memory_setting_turned_off_keeps_the_memory_out(kb_settings, kb_db, baseline):
    off = make_settings(
        kb_settings.database_url.get_secret_value(), kb_settings.data_dir, memory_enabled=False
    )
    memory = ChosenVotes(vote(baseline.context[0].chunk_id, -5.0))
    pipeline = factory.pipeline(off, kb_db, memory=memory)
    assert pipeline.memory is None
    assert ids(pipeline.draft(TICKET).context) == ids(baseline.context)
    assert memory.asked == []
