"""A ticket's context and attachments, end to end: the Zendesk sandbox over real HTTP, Zenpy,
TicketSync and the drafter on the real database, the card's header as the bot builds it."""

from __future__ import annotations

import json
import logging

import pytest

from aitl.core.queue import build_deferrer
from bot.card_views import as_dicts, ticket_parent
from bot.handoff import ticket_header
from connectors import helpcenter
from connectors.attachments import AttachmentFiles
from connectors.services import ZendeskServices
from connectors.tickets import SyncPolicy, TicketSync
from rag.models import Attachment, ReadyDrafts
from tests.support.zendesk import rows, run_worker, sandbox_settings

CUSTOMER = "jana.novak@example.com"
SCREENSHOT = b"\x89PNG\r\n" + bytes(240 * 1024 - 6)  # 240 KB
LOGS = b"2026-03-01 12:00:01 sync failed: timeout\n" * 75  # about 3 KB


class RecordingHandoff:
    """Keeps every ReadyDrafts handed over, as a surface would receive it."""

    def __init__(self) -> None:
        self.ready: list[ReadyDrafts] = []

    def deliver(self, ready: ReadyDrafts) -> bool:
        self.ready.append(ready)
        return True


@pytest.fixture
def settings(kb_settings, sandbox, tmp_path):
    return sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        slack_default_channel="C-support",
    )


@pytest.fixture
def handoff():
    return RecordingHandoff()


@pytest.fixture
def services(settings, kb_db, handoff):
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url), handoff=handoff)


def attachment_rows(db):
    return rows(
        db,
        "SELECT file_name, content_type, size_bytes, url, inline, stored_path"
        " FROM zendesk_attachments ORDER BY attachment_id",
    )


def shown(header) -> str:
    """The parent message's blocks as Slack receives them."""
    return json.dumps(as_dicts(ticket_parent(header)[0]), ensure_ascii=False)


def downloads(sandbox):
    return [r for r in sandbox.requests if r.path.startswith("/attachments/")]


def test_channel_form_type_and_locale_are_stored_and_reach_the_card_header(
    services, sandbox, handoff
):
    brand = sandbox.add_brand("Lumen", "lumen")["id"]
    ticket = sandbox.create_ticket(
        "Hub will not sync",
        "My hub stopped syncing yesterday, screenshot attached.",
        CUSTOMER,
        brand_id=brand,
        ticket_type="incident",
        ticket_form_id=360001,
        channel="web",
        requester_locale="de",
        attachments=[sandbox.upload("screenshot.png", SCREENSHOT, "image/png")],
    )
    # an internal note's file is no customer's attachment; a later customer reply's comes first
    note = sandbox.upload("internal-audit.pdf", b"%PDF-1.4", "application/pdf")
    sandbox.add_comment(
        ticket["id"], "Checked the logs", public=False, author="agent", attachments=[note]
    )
    sandbox.add_comment(
        ticket["id"],
        "Here are the logs too.",
        attachments=[sandbox.upload("logs.txt", LOGS, "text/plain")],
    )
    services.poller.poll()
    run_worker(services)

    stored = rows(
        services.db,
        "SELECT via_channel, ticket_form_id, ticket_type, requester_locale, brand_id"
        " FROM zendesk_tickets WHERE ticket_id = %s",
        ticket["id"],
    )
    assert stored == [("web", 360001, "incident", "de", brand)]

    (ready,) = handoff.ready
    header = ready.ticket
    assert (header.channel, header.form_id, header.ticket_type) == ("web", 360001, "incident")
    assert (header.locale, header.brand) == ("de", str(brand))
    assert [a.file_name for a in header.attachments] == ["logs.txt", "screenshot.png"]
    assert header.attachments[1] == Attachment(
        "screenshot.png", "image/png", len(SCREENSHOT), header.attachments[1].url, False
    )
    assert header.attachments[1].url.startswith(f"{sandbox.url}/attachments/token/")

    # the bot stores the header as plain JSON and shows it on the ticket's parent message
    card_header = json.loads(json.dumps(ticket_header(ready)))
    assert card_header["channel"] == "web" and card_header["locale"] == "de"
    assert [a["file_name"] for a in card_header["attachments"]] == ["logs.txt", "screenshot.png"]
    text = shown(card_header)
    assert "*Channel:* web" in text and "*Type:* incident" in text and "*Locale:* de" in text
    assert "logs.txt (text, 3 KB) · screenshot.png (image, 240 KB)" in text
    assert "internal-audit.pdf" not in text


def test_a_ticket_without_context_shows_only_what_is_known(services, sandbox, handoff):
    sandbox.create_ticket("Order late", "Where is my order?", CUSTOMER)
    services.poller.poll()
    run_worker(services)
    (ready,) = handoff.ready
    assert ready.ticket.channel == "email" and ready.ticket.ticket_type is None
    assert ready.ticket.locale == "en-US" and ready.ticket.attachments == ()
    text = shown(ticket_header(ready))
    assert "*Channel:* email" in text and "Type:" not in text and "Form:" not in text
    assert "attached" not in text


def test_attachments_are_listed_not_downloaded_and_a_broken_one_keeps_its_name(
    services, sandbox, caplog
):
    caplog.set_level(logging.WARNING, logger="connectors.attachments")
    ticket = sandbox.create_ticket(
        "Invoice wrong",
        "See the attached files.",
        CUSTOMER,
        attachments=[
            sandbox.upload("screenshot.png", SCREENSHOT, "image/png"),
            sandbox.upload("pasted.png", b"\x89PNG", "image/png", inline=True),
            # as a real account may list them: no URL and no type, a type and URL that are
            # not one, an attachment without an id, and something that is no attachment
            {"id": 9001, "file_name": "mystery", "content_url": None, "content_type": None},
            {
                "id": 9002,
                "file_name": "odd.bin",
                "content_type": "unknown",
                "content_url": "javascript:alert(1)",
                "size": "big",
            },
            {"file_name": "no-id.txt", "content_url": "https://x.example/no-id.txt"},
            42,
        ],
    )
    first = services.poller.poll()
    services.poller.poll()  # syncing again adds nothing
    assert first.drafts_requested == 1, "a malformed attachment never breaks the sync"
    found = {r[0]: r for r in attachment_rows(services.db)}
    assert sorted(found) == ["mystery", "odd.bin", "pasted.png", "screenshot.png"]
    shot = found["screenshot.png"]
    assert shot[1:3] == ("image/png", len(SCREENSHOT)) and shot[4:] == (False, None)
    assert shot[3].startswith(f"{sandbox.url}/attachments/token/")
    assert shot[3].endswith("?name=screenshot.png")
    assert found["pasted.png"][4] is True
    mystery, odd = found["mystery"], found["odd.bin"]
    assert mystery == ("mystery", None, None, None, False, None)
    assert odd == ("odd.bin", None, None, None, False, None)
    assert downloads(sandbox) == [], "no file is fetched unless the setting asks"
    assert any("without an id" in r.getMessage() for r in caplog.records)
    assert ticket["id"] in [
        r[0] for r in rows(services.db, "SELECT ticket_id FROM zendesk_tickets")
    ]


def test_with_the_setting_files_are_downloaded_within_the_cap(
    services, settings, sandbox, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="connectors.attachments")
    folder = tmp_path / "attachments"
    assert AttachmentFiles.configured(settings) is None, "off by default"
    on = settings.model_copy(update={"zendesk_store_attachments": True})
    assert AttachmentFiles.configured(on) == AttachmentFiles(
        settings.data_dir / "attachments", settings.zendesk_attachment_max_bytes
    )
    logs = sandbox.upload("logs.txt", LOGS, "text/plain")
    big = sandbox.upload("screenshot.png", SCREENSHOT, "image/png")
    ticket = sandbox.create_ticket("Sync", "Logs attached.", CUSTOMER, attachments=[logs, big])
    shot_url = next(
        a["content_url"]
        for a in services.client.comments(ticket["id"])[0]["attachments"]
        if a["file_name"] == "screenshot.png"
    )
    sandbox.add_comment(
        ticket["id"],
        "Two more.",
        attachments=[
            # Zendesk lists no size: the cap holds while the file streams in
            {
                "id": 9101,
                "file_name": "again.png",
                "content_type": "image/png",
                "content_url": shot_url,
            },
            # gone from Zendesk: the download fails, the listing stays
            {
                "id": 9102,
                "file_name": "gone.txt",
                "content_type": "text/plain",
                "size": 4,
                "content_url": f"{sandbox.url}/attachments/token/expired/?name=gone.txt",
            },
        ],
    )
    s = services.settings
    policy = SyncPolicy(
        [],
        None,
        s.adoption_as_is_threshold,
        s.adoption_edited_threshold,
        attachment_files=AttachmentFiles(folder, max_bytes=100_000),
    )
    sync = TicketSync(services.db, services.client, services.queue, policy)
    sync.sync(ticket["id"], via="poll")

    stored = {r[0]: r[5] for r in attachment_rows(services.db)}
    assert stored["screenshot.png"] is None, "240 KB is over the 100 KB cap: never fetched"
    assert stored["again.png"] is None and stored["gone.txt"] is None
    with open(stored["logs.txt"], "rb") as saved:
        assert saved.read() == LOGS
    assert stored["logs.txt"].startswith(str(folder / str(ticket["id"])))
    fetched = [(r.path.split("/")[3], r.status) for r in downloads(sandbox)]
    assert fetched == [(logs, 200), (big, 200), ("expired", 404)], "the client signs in"
    failed = [r.getMessage() for r in caplog.records if "not downloaded" in r.getMessage()]
    assert [m.split(" of ")[0] for m in failed] == ["attachment 9101", "attachment 9102"]

    sync.sync(ticket["id"], via="poll")  # the failed ones are tried again, the stored one not
    again = [r.path.split("/")[3] for r in downloads(sandbox)][len(fetched) :]
    assert again == [big, "expired"]


def test_a_solved_case_notes_what_the_customer_attached(services, sandbox):
    ticket = sandbox.create_ticket(
        "Charged twice",
        "I was charged twice, receipt attached.",
        CUSTOMER,
        attachments=[sandbox.upload("receipt.pdf", b"%PDF-1.4" * 300, "application/pdf")],
    )
    sandbox.add_comment(ticket["id"], "Refunded the second charge.", author="agent")
    sandbox.set_status(ticket["id"], "solved")
    services.poller.poll()
    (case,) = list(helpcenter.case_documents(services.db, 10))
    customer, agent = case.body.split("\n\n")
    assert customer.endswith("(customer attached: receipt.pdf (PDF, 2 KB))")
    assert "attached" not in agent
