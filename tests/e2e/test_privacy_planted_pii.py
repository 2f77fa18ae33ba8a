"""Planted PII: customers' emails, phone numbers, card numbers and street addresses go in
through Zendesk tickets and the agents' Slack modals; none of it comes out in the training
copies, the exported datasets or the weekly digest, where placeholders stand instead."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aitl.core.pii import luhn_valid, redact
from bot import actions
from flywheel.digest.content import digest_of
from flywheel.digest.metrics import week_of
from flywheel.digest.render import render_markdown
from flywheel.export import export_datasets
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import AGENT_ALICE, AGENT_BOB
from tests.support.sandboxes import connected_settings, ticket_thread
from tests.support.slack_app import click, opened, relevance_block, select, submit, text_input

MANAGER = "U0MANAGER"
PLANTED = {
    "[EMAIL]": ["maria.gonzalez84@gmail.com", "m.gonzalez+billing@acme-corp.co.uk"],
    "[PHONE]": ["+1 (415) 555-0134", "020 7946 0958"],
    "[CARD]": ["4539 1488 0343 6467", "5425-2334-3010-9903"],
    "[ADDRESS]": ["742 Evergreen Terrace, Springfield, IL 62704", "12 High Street, Oxford OX1 4AP"],
}
EVERY_VALUE = [value for values in PLANTED.values() for value in values]
# the digits of a card or phone number, however a later step might re-space them
DIGIT_RUNS = ["4539148803436467", "5425233430109903", "4155550134", "02079460958"]


def customer_text(n: int) -> str:
    email, other_email = PLANTED["[EMAIL]"]
    phone, other_phone = PLANTED["[PHONE]"]
    card, other_card = PLANTED["[CARD]"]
    address, other_address = PLANTED["[ADDRESS]"]
    return (
        f"My Lumen hub drops off the wifi every night (case {n}). Write to {email} or "
        f"{other_email}, call {phone} or {other_phone}. Ship the replacement to {address}, "
        f"or to my office, {other_address}. Charge card {card}, not {other_card}."
    )


@pytest.fixture
def slack():
    box = SlackSandbox()
    box.add_user(MANAGER, "mia", "mia@sandbox.example")
    with serve(box):
        yield box


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    # the judge off: a test clicks faster than an agent reads, and every click should flow
    return connected_settings(
        kb_settings, slack, zendesk, tmp_path, slack_manager_ids=[MANAGER], judge="off"
    )


def test_the_planted_values_are_what_the_redaction_rules_look_for():
    """Guards the corpus itself: a card that failed Luhn would pass unredacted by design."""
    assert all(luhn_valid(card.replace(" ", "").replace("-", "")) for card in PLANTED["[CARD]"])
    for placeholder, values in PLANTED.items():
        for value in values:
            assert redact(f"see {value} today") == f"see {placeholder} today", value


def annotate(slack, web, card, agent: str, n: int) -> None:
    """Every kind of click, with the customer's details typed into every free-text field."""
    assert click(slack, web, agent, card, "aitl.prefer.A").status_code == 200
    block_id, _ = relevance_block(card)
    assert click(slack, web, agent, card, actions.RELEVANT, block_id=block_id).status_code == 200
    assert click(slack, web, agent, card, "aitl.adopt.edited.B").status_code == 200
    edited = f"Hi Maria, your replacement ships today. {customer_text(n)}"
    adoption = {
        actions.REASON: select(actions.REASON, "tone"),
        actions.DETAILS: text_input(actions.DETAILS, f"Customer details: {customer_text(n)}"),
        actions.EDITED: text_input(actions.EDITED, edited),
    }
    assert submit(slack, web, agent, adoption).status_code == 200
    assert click(slack, web, agent, card, actions.MISSING).status_code == 200
    assert opened(slack, agent)["callback_id"] == actions.MISSING_VIEW
    note = f"No article on warranty swaps. {customer_text(n)}"
    gap = {actions.NOTE: text_input(actions.NOTE, note)}
    assert submit(slack, web, agent, gap).status_code == 200


def rows(db, sql):
    with db.connection() as conn:
        return conn.execute(sql).fetchall()


def test_planted_pii_never_reaches_training_exports_or_digests(
    services, settings, slack, zendesk, web, kb_db, tmp_path
):
    for n, agent in enumerate((AGENT_ALICE, AGENT_BOB, AGENT_ALICE)):
        _, _, card = ticket_thread(
            services, zendesk, slack, web, f"Hub offline, {PLANTED['[EMAIL]'][0]}", customer_text(n)
        )
        annotate(slack, web, card, agent, n)
    kinds = {k for (k,) in rows(kb_db, "SELECT DISTINCT kind FROM feedback_events")}
    assert kinds == {"preference", "relevance", "adoption", "missing_knowledge"}

    # what the product keeps for training
    kept = {
        "draft-set queries": rows(kb_db, "SELECT query FROM rag_draft_sets"),
        "click rationales": rows(kb_db, "SELECT rationale::text FROM feedback_events"),
        "ticket comments": rows(kb_db, "SELECT body_redacted FROM zendesk_comments"),
    }
    # what leaves it: the exported datasets and the week's digest
    out = tmp_path / "export"
    written = export_datasets(settings, kb_db, out)
    assert written["retriever.jsonl"] and written["generator.jsonl"] and written["gaps.jsonl"]
    exported = {path.name: path.read_text() for path in out.glob("*.jsonl")}
    digest = digest_of(settings, kb_db, week_of(datetime.now(UTC).date()))
    assert digest.gaps, "the agents' notes made a knowledge gap"
    shared = {"digest.md": render_markdown(digest), "digest.json": digest.dumps()}

    places = {
        **{name: json.dumps(found) for name, found in kept.items()},
        **exported,
        **shared,
    }
    for place, text in places.items():
        compact = text.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        leaked = [v for v in EVERY_VALUE if v in text] + [d for d in DIGIT_RUNS if d in compact]
        assert not leaked, f"{place} holds planted PII: {leaked}"
    everything = "\n".join(places.values())
    for placeholder in PLANTED:
        assert placeholder in everything, f"nothing was redacted to {placeholder}"
    assert "[ADDRESS]" in exported["generator.jsonl"] and "[CARD]" in exported["gaps.jsonl"]
    assert "Hi Maria" in exported["generator.jsonl"], "the edited reply was kept, redacted"
