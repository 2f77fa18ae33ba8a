"""The ticket's parent message in Slack: its context facts and what the customer attached,
as pure Block Kit and through the product to the local Slack API server."""

from __future__ import annotations

import json

from bot.card_views import as_dicts, ticket_parent
from connectors import setup
from sandboxes.slack.state import SUPPORT_CHANNEL
from tests.support.sandboxes import run_worker
from tests.support.slack_app import (  # noqa: F401 (the slack and settings fixtures)
    admin_settings_fixture,
    slack_fixture,
)

URL = "https://acme.zendesk.com/agent/tickets/42"


def shown(blocks) -> str:
    return json.dumps(as_dicts(blocks), ensure_ascii=False)


def attachment(name, content_type=None, size=None, inline=False):
    return {
        "file_name": name,
        "content_type": content_type,
        "size_bytes": size,
        "url": f"https://acme.zendesk.com/attachments/token/t/?name={name}",
        "inline": inline,
    }


def test_the_parent_message_lists_attachments_with_kind_and_size_and_links_the_ticket():
    header = {
        "number": 42,
        "subject": "Hub offline",
        "url": URL,
        "channel": "email",
        "ticket_type": "incident",
        "locale": "de",
        "attachments": [
            attachment("screenshot.png", "image/png", 240 * 1024),
            attachment("logs.txt", "text/plain", 3 * 1024),
            attachment("mystery", None, 5000),  # no type: by name only
            attachment("odd.bin", "application/octet-stream", 10),  # unknown type: name only
            attachment("signature-logo.png", "image/png", 900, inline=True),  # not listed
            attachment("<b>&.pdf", "application/pdf", 2_500_000),
            attachment("six.txt", "text/plain", 10),
            attachment("seven.txt", "text/plain", 10),
        ],
    }
    blocks, _ = ticket_parent(header)
    text = shown(blocks)
    assert "*Channel:* email · *Type:* incident · *Locale:* de" in text
    assert "Form:" not in text and "Brand:" not in text, "only what is known"
    line = next(b for b in as_dicts(blocks) if b.get("block_id") == "aitl.attachments")
    files = line["elements"][0]["text"]
    assert files.startswith(
        "*Customer attached:* screenshot.png (image, 240 KB) · logs.txt (text, 3 KB)"
        " · mystery · odd.bin · &lt;b&gt;&amp;.pdf (PDF, 2.4 MB) · and 2 more"
    )
    assert files.endswith(f"<{URL}|open in Zendesk>")
    assert "signature-logo" not in text and "attachments/token" not in text


def test_a_ticket_without_attachments_or_context_shows_neither():
    text = shown(ticket_parent({"number": 7, "subject": "Hi", "url": URL, "attachments": []})[0])
    assert "attached" not in text and "Channel:" not in text and "Locale:" not in text
    old_card = shown(ticket_parent({"number": 7, "subject": "Hi", "url": URL})[0])
    assert "attached" not in old_card, "headers stored before attachments still render"


def test_a_tickets_attachments_reach_its_slack_thread(services, zendesk, slack, web):
    setup.connect(
        services.zendesk, email=zendesk.agent_email, api_token=zendesk.api_token, public_url=web.url
    )
    ticket = zendesk.create_ticket(
        "Hub keeps going offline",
        "My Lumen hub drops off the wifi every night, screenshot attached.",
        "jane@example.com",
        ticket_type="problem",
        requester_locale="fr",
        attachments=[zendesk.upload("screenshot.png", b"\x89PNG" + bytes(20_000), "image/png")],
    )
    zendesk.deliver_pending()
    run_worker(services)
    parent = next(m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"])
    text = shown_message(parent)
    assert "*Customer attached:* screenshot.png (image, 20 KB)" in text
    assert "*Type:* problem" in text and "*Locale:* fr" in text and "*Channel:* email" in text
    assert f"/agent/tickets/{ticket['id']}|open in Zendesk>" in text


def shown_message(message) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)
