"""A public reply never quotes an agent-only article: the write-back is refused when asked and
again before posting, against the Zendesk sandbox over real HTTP; an internal note may."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aitl.core.queue import build_deferrer
from connectors import exceptions
from connectors.services import ZendeskServices
from rag import factory
from rag import store as rag_store
from rag.models import SourceDocument, Ticket
from tests.support.zendesk import run_worker, sandbox_settings

CUSTOMER = "jane.doe@example.com"
NOW = datetime(2026, 11, 22, tzinfo=UTC)
# the sentence an agent might paste from the internal article (twelve words)
SECRET = "Open the billing console, pick the late refund and press Issue credit."
GOODWILL = SourceDocument(
    "tests",
    "goodwill-credit",
    "Internal: how to issue a goodwill credit",
    "When a refund is more than ten days late, agents may issue a goodwill credit of fifteen "
    f"dollars to the customer. {SECRET}",
    NOW,
    audience="internal",
)
CHARGER = SourceDocument(
    "tests",
    "spare-charger",
    "Ordering a spare charger",
    "A spare charger for the Lumen camera can be ordered from the accessories page of the "
    "store. Spare chargers ship within two business days.",
    NOW,
)


@pytest.fixture
def settings(kb_settings, sandbox, tmp_path):
    return sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        zendesk_public_writeback=True,
    )


@pytest.fixture
def services(settings, kb_db):
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url))


def drafted(
    settings, db, ticket: Ticket, *documents: SourceDocument
) -> list[rag_store.StoredDraft]:
    """The ticket drafted over the sample knowledge base and ``documents``, as stored."""
    factory.ingestor(settings, db).ingest(list(documents), source="tests")
    result = factory.pipeline(settings, db).draft(ticket)
    with db.connection() as conn:
        set_id = rag_store.save_draft_set(conn, f"zendesk:{ticket.external_id}", "q", result)
        return rag_store.drafts_of_set(conn, set_id)


def writebacks(db):
    with db.connection() as conn:
        return conn.execute(
            "SELECT public, status, last_error FROM zendesk_writebacks ORDER BY id"
        ).fetchall()


LATE_REFUND = "My refund is more than ten days late. Can you issue a goodwill credit?"


def test_a_public_reply_quoting_an_internal_source_is_refused_and_a_note_is_not(
    services, settings, kb_db, sandbox
):
    ticket = sandbox.create_ticket("Late refund", LATE_REFUND, CUSTOMER)
    draft, _ = drafted(
        settings, kb_db, Ticket("Late refund", LATE_REFUND, external_id="1"), GOODWILL
    )
    # the agent pastes the internal article's step into the draft, reworded case and commas
    edited = f"{draft.text}\n\nopen the billing console pick the late refund and press issue credit"
    with pytest.raises(exceptions.InternalSourceQuoted) as refused:
        services.writeback.request(
            key="adopt-public", ticket_id=ticket["id"], body=edited, draft_id=draft.id, public=True
        )
    message = str(refused.value)
    assert "'Internal: how to issue a goodwill credit'" in message
    assert "agents only" in message and "internal note" in message
    assert writebacks(kb_db) == [], "nothing is queued for the customer"

    note = services.writeback.request(
        key="adopt-note", ticket_id=ticket["id"], body=edited, draft_id=draft.id, public=False
    )
    run_worker(services)
    posted = [c for c in sandbox.comments(ticket["id"]) if "billing console" in c["body"]]
    assert [c["public"] for c in posted] == [False]
    assert writebacks(kb_db) == [(False, "posted", None)] and note.public is False


def test_a_reply_that_does_not_quote_the_internal_source_goes_out_publicly(
    services, settings, kb_db, sandbox
):
    ticket = sandbox.create_ticket("Late refund", LATE_REFUND, CUSTOMER)
    draft, _ = drafted(
        settings, kb_db, Ticket("Late refund", LATE_REFUND, external_id="2"), GOODWILL
    )
    with kb_db.connection() as conn:
        context = rag_store.context_refs(conn, draft.draft_set_id)
    assert any(r.audience == "internal" for r in context), "the internal article was found"
    # the draft itself, plus a few words of the internal article (short of a sentence)
    body = f"{draft.text}\nWe can look at a goodwill credit."
    services.writeback.request(
        key="adopt-2", ticket_id=ticket["id"], body=body, draft_id=draft.id, public=True
    )
    run_worker(services)
    assert writebacks(kb_db) == [(True, "posted", None)]
    [reply] = [c for c in sandbox.comments(ticket["id"]) if "look at a goodwill" in c["body"]]
    assert reply["public"] is True


def test_an_article_turned_internal_after_the_request_is_not_posted(
    services, settings, kb_db, sandbox
):
    question = "Where can I order a spare charger for my Lumen camera?"
    ticket = sandbox.create_ticket("Spare charger", question, CUSTOMER)
    drafts = drafted(settings, kb_db, Ticket("Spare charger", question, external_id="3"), CHARGER)
    draft = next(d for d in drafts if "accessories page" in d.text)
    services.writeback.request(
        key="adopt-3", ticket_id=ticket["id"], body=draft.text, draft_id=draft.id, public=True
    )
    # the next sync finds the article moved to an agents-only segment
    turned = SourceDocument(**{**CHARGER.__dict__, "audience": "internal"})
    factory.ingestor(settings, kb_db).ingest([turned], source="tests")
    run_worker(services)
    assert not [c for c in sandbox.comments(ticket["id"]) if "accessories page" in c["body"]]
    [(public, status, error)] = writebacks(kb_db)
    assert (public, status) == (True, "failed")  # refused for good: no retry posts it
    assert "'Ordering a spare charger'" in error and "internal note" in error
