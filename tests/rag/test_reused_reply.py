"""A reply agents used on a near-identical ticket, offered as a draft of its own kind, through
the real pipeline on the sample knowledge base (real MiniLM, real pgvector) and the flywheel's
real memory: it takes the slot that is not the champion's, cites what its draft cited, and is
rendered for the new ticket, so the earlier customer's name and ticket never reach it; a ticket
below the floor, the setting off, a challenger in test on the ticket, or a cited article gone
agent-only leave the drafts as they were."""

from __future__ import annotations

import logging

import pytest

from aitl.app.wiring import memory_builder
from flywheel.memory import FlywheelMemory
from rag import factory
from rag import store as rag_store
from rag.memory import REUSED_REPLY
from rag.models import DraftSet, Ticket
from tests.conftest import make_settings
from tests.flywheel.test_memory_replies import SOURCE, adopt, card, chunks_of, source_ticket

NEW_VALUES = {
    "ticket.id": "99",
    "ticket.requester.name": "Bo Chen",
    "ticket.requester.first_name": "Bo",
    "current_user.name": "Kim Lee",
    "current_user.first_name": "Kim",
}
ORDER = "Where is my order?"
BO = "Hi, my order still has not arrived after two weeks. Where is my parcel? Thanks, Bo"


def ticket(ref: str = "zendesk:99", subject: str = ORDER, body: str = BO) -> Ticket:
    return Ticket(subject, body, external_id=ref, placeholders=NEW_VALUES)


@pytest.fixture
def remembered(kb_settings, kb_db) -> int:
    """Agents U1 and U2 sent draft A of ticket #4321 as it was; the memory was refreshed."""
    (track,) = chunks_of(kb_db, "track-your-order")
    source_ticket(kb_db)
    c = card(kb_db, citations=(track,))
    adopt(kb_db, c, agent="U1")
    adopt(kb_db, c, agent="U2")
    assert memory_builder(kb_settings, kb_db).refresh().replies == 1
    return track


def drafted(settings, db, t: Ticket, **kw) -> DraftSet:
    return factory.pipeline(settings, db, memory=FlywheelMemory(settings, db), **kw).draft(t)


def by_generator(result: DraftSet) -> dict:
    return {d.producer.get("generator"): d for d in result.drafts}


def test_a_near_identical_ticket_gets_the_reply_rendered_for_its_own_customer(
    kb_settings, kb_db, remembered
):
    result = drafted(kb_settings, kb_db, ticket())
    drafts = by_generator(result)
    assert set(drafts) == {"extractive", REUSED_REPLY}
    reused, champion = drafts[REUSED_REPLY], drafts["extractive"]
    assert (reused.producer["role"], champion.producer["role"]) == ("challenger", "champion")
    assert reused.text == (
        "Hi Bo,\n\nSorry your order is late. You can follow it under Orders > Track in the app."
        " For ticket #99 we checked the carrier.\n\nBest,\nKim"
    )
    for theirs in ("Ana", "Lopez", "Sam", "Reyes", str(SOURCE), "{{"):
        assert theirs not in reused.text
    assert [c.chunk_id for c in reused.citations] == [remembered]
    source = reused.producer["reused_from"]
    assert source["ticket_ref"] == f"zendesk:{SOURCE}" and source["similarity"] >= 0.9
    assert source["agents"] == ["U1", "U2"] and source["origin"] == "as_is"
    assert "ticket.requester.first_name" in reused.producer["placeholders"]["rendered"]
    assert result.timings_ms["reuse"] >= 0

    # stored as the pipeline's callers store it, the card is a duel the online test counts
    with kb_db.connection() as conn:
        set_id = rag_store.save_draft_set(conn, "zendesk:99", "query", result)
        [duel] = rag_store.duel_sets(conn, "extractive", REUSED_REPLY)
    assert duel.draft_set_id == set_id and duel.challenger_label == reused.label


def test_the_reply_takes_slot_a_or_b_by_turns(kb_settings, kb_db, remembered):
    labels = set()
    for n in range(100, 108):
        drafts = by_generator(drafted(kb_settings, kb_db, ticket(f"zendesk:{n}")))
        assert drafts[REUSED_REPLY].label != drafts["extractive"].label
        labels.add(drafts[REUSED_REPLY].label)
    assert labels == {"A", "B"}, "position bias cancels out, as for a challenger"


def test_below_the_floor_off_or_its_own_ticket_drafts_as_before(kb_settings, kb_db, remembered):
    other_words = ticket(
        subject="Order late",
        body="Hi, my order still has not arrived after three weeks. Where is my package?",
    )
    url, data = kb_settings.database_url.get_secret_value(), kb_settings.data_dir
    off = make_settings(url, data, memory_replies_enabled=False)
    cases = [
        (kb_settings, other_words),  # similar enough to vote on sources, not to reuse a reply
        (off, ticket()),
        (kb_settings, ticket(f"zendesk:{SOURCE}")),  # its own reply is not offered again
    ]
    for settings, t in cases:
        result = drafted(settings, kb_db, t)
        assert [d.producer["role"] for d in result.drafts] == ["variant", "variant"]
        assert not any("reused_from" in d.producer for d in result.drafts)


def test_a_challenger_in_test_on_the_ticket_keeps_its_duel(kb_settings, kb_db, remembered):
    """The reuse never takes a running test's duel; on tickets outside the challenger's
    share it faces the champion, as the challenger does."""
    challenger = factory.generator(kb_settings)
    names = ("extractive", "r1")
    url, data = kb_settings.database_url.get_secret_value(), kb_settings.data_dir
    every = drafted(kb_settings, kb_db, ticket(), challenger=challenger, names=names)
    assert set(by_generator(every)) == {"extractive", "r1"}
    few = make_settings(url, data, challenger_share=1e-9)
    outside = drafted(few, kb_db, ticket(), challenger=challenger, names=names)
    assert set(by_generator(outside)) == {"extractive", REUSED_REPLY}


def test_a_cited_article_turned_agent_only_is_not_offered_before_the_refresh(
    kb_settings, kb_db, remembered
):
    with kb_db.connection() as conn:
        conn.execute(
            "UPDATE kb_documents SET audience = 'internal' WHERE id ="
            " (SELECT document_id FROM kb_chunks WHERE id = %s)",
            (remembered,),
        )
    result = drafted(kb_settings, kb_db, ticket())
    assert REUSED_REPLY not in by_generator(result)


class BrokenReplies(FlywheelMemory):
    def reply(self, *args, **kwargs):
        raise RuntimeError("the replies' index is gone")


def test_a_failing_reply_memory_leaves_the_drafts_as_they_were(
    kb_settings, kb_db, remembered, caplog
):
    caplog.set_level(logging.ERROR)
    pipeline = factory.pipeline(kb_settings, kb_db, memory=BrokenReplies(kb_settings, kb_db))
    result = pipeline.draft(ticket())
    assert [d.producer["role"] for d in result.drafts] == ["variant", "variant"]
    assert "the replies' index is gone" in caplog.text
