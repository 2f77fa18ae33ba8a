"""A person in the Slack sandbox page, driven by Playwright in Debian's headless Chromium: a
ticket's thread is on the page, Prefer A and Used A as is are clicked, the rationale modal is
submitted, and the events land in the database while the card shows the choice."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from aitl.app.web import create_app
from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from aitl.core.servers import serve_in_thread
from aitl.core.settings import PROJECT_ROOT
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import AGENT_ALICE, SUPPORT_CHANNEL
from tests.support.sandboxes import connected_settings, run_worker, ticket_thread, zendesk_server

CHROMIUM = os.environ.get("AITL_TEST_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("AITL_TEST_ARTEFACTS", PROJECT_ROOT / "test-artefacts"))


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    """Not skipped when missing: `.ci/run` installs it, and a silent skip would hide a gap."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does)")


@pytest.fixture
def product(kb_settings, kb_db, tmp_path):
    slack = SlackSandbox()
    with serve(slack), zendesk_server() as zendesk:
        settings = connected_settings(kb_settings, slack, zendesk, tmp_path)
        with serve_in_thread(create_app(settings, database=kb_db)) as web:
            slack.app_url = f"{web.url}/slack/events"
            services = build_services(settings, kb_db, build_deferrer(kb_db.url))
            yield slack, zendesk, web, services


def work(services) -> None:
    """The worker's jobs, in their own thread: Playwright's sync API holds this thread's loop."""
    done = threading.Thread(target=run_worker, args=(services,))
    done.start()
    done.join(timeout=60)


def wait_for_events(db, count: int, timeout_s: float = 15.0) -> None:
    """Wait for the page's click to reach the app (the page posts it asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while len(events(db)) < count:
        assert time.monotonic() < deadline, f"expected {count} events, have {events(db)}"
        time.sleep(0.1)


def events(db):
    with db.connection() as conn:
        return conn.execute(
            "SELECT kind, value, agent_id, source FROM feedback_events ORDER BY id"
        ).fetchall()


def test_an_agent_prefers_a_draft_and_explains_its_adoption_in_the_page(product, kb_db):
    from playwright.sync_api import expect, sync_playwright

    slack, zendesk, web, services = product
    ticket_thread(
        services,
        zendesk,
        slack,
        web,
        "Hub keeps going offline",
        "My Lumen hub drops off the wifi every night. How do I reset it?",
    )
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{slack.base_url}/#user={AGENT_ALICE}&channel={SUPPORT_CHANNEL}")
        page.get_by_role("button", name="1 reply").click()
        page.get_by_role("button", name="Prefer A", exact=True).click()
        wait_for_events(kb_db, 1)
        work(services)  # the card's refresh job
        expect(page.get_by_role("button", name="✓ Prefer A")).to_be_visible(timeout=10_000)

        page.get_by_role("button", name="Used A as is").click()
        modal = page.locator("dialog#modal")
        expect(modal).to_be_visible(timeout=10_000)
        expect(modal.get_by_text("Main reason")).to_be_visible()
        modal.get_by_role("button", name="Save").click()
        expect(modal.get_by_text("Anything we missed?")).to_be_visible(timeout=10_000)
        modal.get_by_role("button", name="Nothing missing").click()
        expect(modal).to_be_hidden(timeout=10_000)
        wait_for_events(kb_db, 2)
        work(services)
        expect(page.get_by_role("button", name="✓ Used A as is")).to_be_visible(timeout=10_000)
        page.screenshot(path=str(ARTEFACTS / "sandbox-prefer-a.png"), full_page=True)
        browser.close()

    stored = events(kb_db)
    assert ("preference", "A", AGENT_ALICE, "slack") in stored
    assert ("adoption", "as_is", AGENT_ALICE, "slack") in stored
    [card] = [m for m in slack.replies(SUPPORT_CHANNEL, slack.messages(SUPPORT_CHANNEL)[0]["ts"])]
    assert "✓ Prefer A" in json.dumps(card["blocks"], ensure_ascii=False)
