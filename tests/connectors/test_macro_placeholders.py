"""Macros with Liquid placeholders, replayed through the sandbox: synced into the knowledge
base as written, drafted through the real pipeline with the ticket's values rendered and the
rest left out, and never written back to Zendesk raw."""

from __future__ import annotations

import re

import pytest

from aitl.core.queue import build_deferrer
from bot.card_views import _draft_blocks
from connectors import exceptions, helpcenter
from connectors.services import ZendeskServices
from rag import store as rag_store
from sandboxes.zendesk.state import PLACEHOLDER_MACROS
from tests.connectors.test_zendesk_connector import settings  # noqa: F401
from tests.support.zendesk import rows, run_worker

RAW = re.compile(r"\{\{|\}\}|\{%|%\}")
CUSTOMER = "jane.doe@example.com"


@pytest.fixture
def services(settings, kb_db):  # noqa: F811
    enabled = settings.model_copy(update={"zendesk_sync_macros": True})
    return ZendeskServices(enabled, kb_db, build_deferrer(kb_db.url))


@pytest.fixture
def drafted(services, sandbox):
    """The seeded macros synced, and a refund ticket assigned to the sandbox's agent drafted
    from them by the worker; returns the Zendesk ticket."""
    sandbox.add_placeholder_macros()
    assert services.sync_kb()[helpcenter.MACROS].added == len(PLACEHOLDER_MACROS)
    ticket = sandbox.create_ticket(
        "Refund not in my bank account",
        "The refund for my request was issued today but has not reached my bank account."
        " Is a business account refund escalated to the billing team?",
        CUSTOMER,
        requester_name="Jane Doe",
    )
    sandbox.update_ticket(ticket["id"], {"assignee_id": sandbox.agent["id"]}, sandbox.agent["id"])
    services.poller.poll()
    run_worker(services)
    return ticket


def test_macro_text_keeps_its_placeholders_in_the_knowledge_base(services, drafted):
    bodies = dict(
        rows(
            services.db,
            "SELECT title, body FROM kb_documents WHERE source = %s",
            helpcenter.MACROS,
        )
    )
    assert "Hi {{ticket.requester.first_name}}" in bodies["Refund issued"]
    assert "{% if ticket.priority == 'urgent' %}" in bodies["Urgent refund"]
    # an HTML macro's link whose href is a placeholder keeps it, as a Markdown link
    assert "[rate this reply]({{satisfaction.rating_url}})" in bodies["Refund survey"]


def test_drafts_from_macros_render_known_placeholders_and_carry_none_raw(services, drafted):
    [(set_id, context)] = rows(services.db, "SELECT id, context FROM rag_draft_sets")
    quoted = rows(
        services.db,
        "SELECT DISTINCT d.title FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
        " WHERE c.id = ANY(%s) AND d.source = %s",
        context,
        helpcenter.MACROS,
    )
    assert len(quoted) >= 2  # the drafts were made from the macros, so the check means something
    drafts = rows(services.db, "SELECT label, text, producer FROM rag_drafts")
    assert [d[0] for d in drafts] == ["A", "B"]
    for _, text, _ in drafts:
        assert not RAW.search(text), text
    texts = "\n".join(d[1] for d in drafts)
    assert f"Hi Jane, the refund for request #{drafted['id']} was issued today." in texts
    done = [d[2]["placeholders"] for d in drafts if "placeholders" in d[2]]
    assert "ticket.requester.first_name" in {n for p in done for n in p["rendered"]}
    # the card shows the agent what a draft left out
    with services.db.connection() as conn:
        stored = rag_store.drafts_of_set(conn, set_id)
    removed = [d for d in stored if d.producer.get("placeholders", {}).get("removed")]
    for draft in removed:
        note = _draft_blocks(draft, set_id)[-1].to_dict()
        assert note["type"] == "context"
        assert "Left out a sentence that needed" in note["elements"][0]["text"]


def test_write_back_renders_known_placeholders_and_refuses_the_rest(services, sandbox, drafted):
    ticket_id = drafted["id"]
    with pytest.raises(exceptions.UnfilledPlaceholder, match=r"\{\{ticket\.organization\.name\}\}"):
        services.writeback.request(
            key="unknown",
            ticket_id=ticket_id,
            body="Refunds for {{ticket.organization.name}} go to the business account.",
        )
    with pytest.raises(exceptions.UnfilledPlaceholder, match="customer's order number"):
        services.writeback.request(
            key="gap", ticket_id=ticket_id, body="Your order [‹customer's order number›] ships."
        )
    assert rows(services.db, "SELECT 1 FROM zendesk_writebacks") == []

    services.writeback.request(
        key="known",
        ticket_id=ticket_id,
        body="Hi {{ticket.requester.first_name}}, rate us: {{satisfaction.rating_url}}"
        "\n\n{{ current_user.first_name }}",
    )
    run_worker(services)
    [posted] = [c for c in sandbox.comments(ticket_id) if c["body"].startswith("Hi Jane")]
    assert not RAW.search(posted["body"])
    assert f"{sandbox.url}/requests/{ticket_id}/satisfaction/new" in posted["body"]
    assert posted["body"].endswith("Sandbox")  # current_user: the assignee, first name


def test_a_macro_with_plain_and_html_text_is_synced_once(services, sandbox):
    """Zendesk keeps both comment_value and comment_value_html on some macros: the HTML one is
    the reply (with its links), and the text does not appear twice."""
    sandbox.add_macro(
        "Password reset",
        'Reset it from <a href="https://help.example.com/reset">the sign-in page</a>.',
        html=True,
        actions=[{"field": "comment_value", "value": "Reset it from the sign-in page."}],
    )
    services.sync_kb()
    [(body,)] = rows(
        services.db, "SELECT body FROM kb_documents WHERE source = %s", helpcenter.MACROS
    )
    assert body == "Reset it from [the sign-in page](https://help.example.com/reset)."
