"""An agent-only article on the card: listed and marked internal, with its relevance buttons,
never in the drafts, and refused when an agent pastes it into a public reply (signed Slack
requests through the real Bolt app; Zendesk sandbox over HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot import actions
from bot.card_views import INTERNAL_MARK
from rag import factory
from rag.models import SourceDocument
from sandboxes.slack.state import AGENT_ALICE
from tests.support.sandboxes import connected_settings, run_worker, ticket_thread
from tests.support.slack_app import (  # noqa: F401 (the slack fixture)
    click,
    opened,
    select,
    slack_fixture,
    submit,
    text_input,
)

STEP = "Check the router log in the fleet console before you suggest a factory reset."
ESCALATION = SourceDocument(
    "tests",
    "hub-offline-escalation",
    "Internal: Lumen hub offline escalations",
    "When a Lumen hub drops off the wifi every night, do not ask the customer to reset the "
    f"hub yet. {STEP} Hubs on firmware 4.2 that drop off every night get a free replacement.",
    datetime(2026, 11, 22, tzinfo=UTC),
    audience="internal",
)


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    return connected_settings(kb_settings, slack, zendesk, tmp_path, zendesk_public_writeback=True)


@pytest.fixture
def thread(settings, kb_db, services, zendesk, slack, web):
    factory.ingestor(settings, kb_db).ingest([ESCALATION], source="tests")
    return ticket_thread(
        services,
        zendesk,
        slack,
        web,
        "Hub keeps going offline",
        "My Lumen hub drops off the wifi every night. How do I reset it?",
    )


def internal_chunk(db) -> int:
    with db.connection() as conn:
        return conn.execute(
            "SELECT c.id FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
            " WHERE d.external_id = %s AND c.retired_at IS NULL",
            (ESCALATION.external_id,),
        ).fetchone()[0]


def test_the_card_lists_the_internal_source_marked_with_its_relevance_buttons(
    services, thread, slack, web, kb_db
):
    _, _, card = thread
    chunk = internal_chunk(kb_db)
    blocks = card["blocks"]
    drafts = [b["text"]["text"] for b in blocks if b.get("block_id", "").startswith("aitl.draft.")]
    assert len(drafts) == 2 and not any("fleet console" in d for d in drafts)
    [listed] = [b for b in blocks if "Lumen hub offline escalations" in json.dumps(b)]
    assert listed["text"]["text"].split("] ", 1)[1].startswith(INTERNAL_MARK)
    buttons = next(b for b in blocks if b.get("block_id") == f"aitl.rel.{chunk}")
    assert [e["action_id"] for e in buttons["elements"]] == [actions.RELEVANT, actions.NOT_RELEVANT]
    footer = blocks[-1]["elements"][0]["text"]
    assert "1 internal (agents only) not quoted" in footer

    clicked = click(slack, web, AGENT_ALICE, card, actions.RELEVANT, block_id=f"aitl.rel.{chunk}")
    assert clicked.status_code == 200
    with kb_db.connection() as conn:
        marked = conn.execute(
            "SELECT kind, value, chunk_ids FROM feedback_events WHERE kind = 'relevance'"
        ).fetchall()
    assert marked == [("relevance", "relevant", [chunk])]


def test_pasting_the_internal_step_into_a_public_reply_is_refused_in_the_modal(
    services, thread, slack, web, zendesk, kb_db
):
    ticket, _, card = thread
    click(slack, web, AGENT_ALICE, card, "aitl.adopt.edited.A")
    opened(slack, AGENT_ALICE)
    posted = {"type": "checkboxes", "selected_options": [{"value": "post"}, {"value": "public"}]}
    values = {
        actions.REASON: select(actions.REASON, "tone"),
        actions.EDITED: text_input(actions.EDITED, f"Hi Jane, {STEP.lower()} Thanks!"),
        actions.POST: {actions.POST: posted},
    }
    answer = submit(slack, web, AGENT_ALICE, values).json()
    shown = json.dumps(answer["view"])
    assert "Could not post to Zendesk" in shown
    assert "internal article 'Internal: Lumen hub offline escalations'" in shown
    run_worker(services)
    assert not [c for c in zendesk.comments(ticket["id"]) if "fleet console" in c["body"]]
    with kb_db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM zendesk_writebacks").fetchone()[0] == 0
