"""The Zendesk connector end to end: Zenpy against the local Zendesk sandbox, our web app
over real HTTP, the procrastinate worker, and the real database with the sample KB."""

from __future__ import annotations

import time

import pytest

from aitl.core.queue import build_deferrer
from connectors import exceptions, helpcenter, setup
from connectors.services import ZendeskServices
from connectors.tickets import TicketSync
from flywheel.replies import record_sent_reply
from tests.support.zendesk import rows, run_worker, sandbox_settings

CUSTOMER = "jane.doe@example.com"


@pytest.fixture
def settings(kb_settings, sandbox, tmp_path):
    return sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        zendesk_page_size=2,
        slack_default_channel="C-support",
        slack_routes=[{"tag": "vip", "channel": "C-vip"}],
    )


@pytest.fixture
def services(settings, kb_db):
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url))


def test_connect_creates_the_webhook_and_stores_its_secret_encrypted(services, sandbox, web):
    done = setup.connect(
        services, email=sandbox.agent_email, api_token=sandbox.api_token, public_url=web.url
    )
    assert done.created and done.webhook_endpoint == f"{web.url}/zendesk/webhook"
    hook = sandbox.webhook(done.webhook_id)
    assert hook["endpoint"] == done.webhook_endpoint and hook["status"] == "active"
    assert services.webhook_secrets() == [sandbox.signing_secret(done.webhook_id)]
    again = setup.connect(
        services, email=sandbox.agent_email, api_token=sandbox.api_token, public_url=web.url
    )
    assert not again.created and again.webhook_id == done.webhook_id
    assert len(sandbox.webhooks()) == 1
    ciphertexts = rows(services.db, "SELECT ciphertext FROM connector_secrets")
    assert all(sandbox.api_token.encode() not in bytes(c[0]) for c in ciphertexts)


def test_connect_with_a_wrong_token_is_a_clear_error(services, sandbox, web):
    with pytest.raises(exceptions.ZendeskAuthFailed, match="credentials"):
        setup.connect(services, email=sandbox.agent_email, api_token="wrong", public_url=web.url)


def test_new_ticket_reaches_drafts_once_through_webhook_then_poller(services, sandbox, web):
    setup.connect(
        services, email=sandbox.agent_email, api_token=sandbox.api_token, public_url=web.url
    )
    ticket = sandbox.create_ticket(
        "Password reset email never arrives",
        "I asked for a reset link twice but nothing came.",
        CUSTOMER,
        tags=["vip"],
    )
    deliveries = sandbox.deliver_pending()
    assert [(d.state, d.last_status) for d in deliveries] == [("delivered", 200)]
    run_worker(services)
    requests = rows(
        services.db,
        "SELECT ticket_id, channel, status, requested_via, draft_set_id"
        " FROM zendesk_draft_requests",
    )
    assert [(r[0], r[1], r[2], r[3]) for r in requests] == [
        (ticket["id"], "C-vip", "drafted", "webhook")
    ]
    texts = rows(
        services.db, "SELECT label, text FROM rag_drafts WHERE draft_set_id = %s", requests[0][4]
    )
    assert [t[0] for t in texts] == ["A", "B"] and "password" in texts[0][1].lower()

    time.sleep(1.1)  # a retry signs a new timestamp; the same second would be a replay (409)
    assert [d.last_status for d in sandbox.redeliver(deliveries[0].event_id)] == [200]
    report = services.poller.poll()  # and the poller sees the ticket already synced
    run_worker(services)
    assert report.tickets_seen >= 1 and report.drafts_requested == 0
    assert len(rows(services.db, "SELECT 1 FROM zendesk_draft_requests")) == 1
    assert rows(services.db, "SELECT duplicates FROM zendesk_events") == [(1,)]


def test_poller_alone_drafts_every_ticket_once_and_new_replies_again(services, sandbox):
    ids = [
        sandbox.create_ticket(
            f"Question {i}", f"My hub number {i} will not pair.", f"c{i}@example.com"
        )["id"]
        for i in range(5)
    ]
    first = services.poller.poll()
    run_worker(services)
    # Zenpy sends per_page only with start_time, so later pages use the server default
    assert first.pages >= 2 and first.tickets_synced == 5 and first.drafts_requested == 5
    assert services.poller.poll().drafts_requested == 0
    sandbox.add_comment(ids[0], "Still not pairing after the reset, any other idea?")
    assert services.poller.poll().drafts_requested == 1
    run_worker(services)
    counts = rows(
        services.db,
        "SELECT ticket_id, count(*) FROM zendesk_draft_requests"
        " GROUP BY ticket_id ORDER BY ticket_id",
    )
    assert counts == [(ids[0], 2)] + [(i, 1) for i in ids[1:]]


def test_poller_interrupted_mid_page_resumes_without_loss_or_duplicates(
    services, sandbox, monkeypatch
):
    ids = [
        sandbox.create_ticket(f"Q{i}", f"Refund question {i}", f"r{i}@example.com")["id"]
        for i in range(5)
    ]
    real_sync, calls = TicketSync.sync, {"n": 0}

    def flaky(self, ticket_id, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the second ticket of the second page
            raise exceptions.ZendeskUnavailable("connection reset")
        return real_sync(self, ticket_id, **kwargs)

    monkeypatch.setattr(TicketSync, "sync", flaky)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.poller.poll()
    state = rows(services.db, "SELECT last_error FROM zendesk_sync_state WHERE name='tickets'")
    assert "connection reset" in state[0][0]
    services.poller.poll()
    synced = rows(services.db, "SELECT ticket_id FROM zendesk_draft_requests ORDER BY ticket_id")
    assert [r[0] for r in synced] == ids


def test_rate_limited_export_honours_retry_after(services, sandbox):
    sandbox.create_ticket("Hi", "Where is my order?", CUSTOMER)
    sandbox.fail("GET", r"incremental/tickets", status=429, retry_after=1)
    report = services.poller.poll()
    assert report.tickets_synced == 1
    statuses = [r.status for r in sandbox.requests if "incremental" in r.path]
    assert statuses[:2] == [429, 200]


def test_internal_notes_never_reach_drafts_and_training_copy_is_redacted(services, sandbox):
    ticket = sandbox.create_ticket(
        "Camera offline",
        "My camera is offline. Call me at +1 202-555-0147 or jane.doe@example.com",
        CUSTOMER,
    )
    sandbox.add_comment(
        ticket["id"], "SECRET-NOTE customer is on the legacy plan", public=False, author="agent"
    )
    sandbox.add_comment(ticket["id"], "It still drops every evening.")
    services.poller.poll()
    run_worker(services)
    comments = rows(
        services.db,
        "SELECT public, author_role, body, body_redacted FROM zendesk_comments ORDER BY created_at",
    )
    assert [(c[0], c[1]) for c in comments] == [
        (True, "customer"),
        (False, "agent"),
        (True, "customer"),
    ]
    assert "+1 202-555-0147" in comments[0][2] and "[PHONE]" in comments[0][3]
    assert "[EMAIL]" in comments[0][3] and "jane.doe" not in comments[0][3]
    query, texts = rows(
        services.db,
        "SELECT s.query, array_agg(d.text) FROM rag_draft_sets s"
        " JOIN rag_drafts d ON d.draft_set_id = s.id GROUP BY s.id",
    )[0]
    assert "SECRET-NOTE" not in query and all("SECRET-NOTE" not in t for t in texts)
    assert "jane.doe" not in query and "drops every evening" in query


def test_help_center_sync_fills_updates_and_prunes_the_knowledge_base(services, sandbox):
    kept = sandbox.add_article("Gift wrapping", "<p>We gift wrap any order for 4 euros.</p>")
    gone = sandbox.add_article("Old promo", "<p>Use code SUMMER for 10% off.</p>")
    sandbox.add_article("Unreleased", "<p>Not yet.</p>", draft=True)
    reports = services.sync_kb()
    assert (reports[helpcenter.ARTICLES].added, reports[helpcenter.ARTICLES].failures) == (2, [])
    hits = services.drafter.pipeline().retriever.search("can you gift wrap my order", 3)
    assert hits[0].title == "Gift wrapping" and hits[0].source == helpcenter.ARTICLES
    assert hits[0].url.startswith(sandbox.url) and f"/articles/{kept['id']}-" in hits[0].url

    sandbox.update_article(kept["id"], body_html="<p>Gift wrapping now costs 5 euros.</p>")
    sandbox.archive_article(gone["id"])
    report = services.sync_kb()[helpcenter.ARTICLES]
    assert (report.updated, report.deleted, report.unchanged) == (1, 1, 0)
    live = rows(
        services.db,
        "SELECT title FROM kb_documents WHERE source = %s AND deleted_at IS NULL",
        helpcenter.ARTICLES,
    )
    assert live == [("Gift wrapping",)]


def test_write_back_posts_once_as_an_internal_note(services, sandbox):
    ticket = sandbox.create_ticket("Refund", "Where is my refund?", CUSTOMER)
    first = services.writeback.request(
        key="adopt-1", ticket_id=ticket["id"], body="Your refund is on its way.", public=True
    )
    again = services.writeback.request(
        key="adopt-1", ticket_id=ticket["id"], body="Your refund is on its way.", public=True
    )
    assert first.id == again.id and first.public is False  # public replies need the setting
    run_worker(services)
    notes = [c for c in sandbox.comments(ticket["id"]) if "refund is on its way" in c["body"]]
    assert len(notes) == 1 and notes[0]["public"] is False
    stored = rows(services.db, "SELECT status, comment_id FROM zendesk_writebacks")
    assert stored == [("posted", notes[0]["id"])]
    assert (
        len(
            rows(
                services.db,
                "SELECT 1 FROM procrastinate_jobs WHERE task_name = 'connectors:write_back'",
            )
        )
        == 1
    )


def test_write_back_retried_after_a_timeout_posts_one_comment(services, sandbox):
    ticket = sandbox.create_ticket("Refund", "Where is my refund?", CUSTOMER)
    wb = services.writeback.request(key="adopt-2", ticket_id=ticket["id"], body="Refund sent.")
    sandbox.delay("PUT", rf"tickets/{ticket['id']}", seconds=4, after_apply=True)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.writeback.run(wb.id)  # Zendesk wrote the comment, the client timed out
    comment_id = services.writeback.run(wb.id)
    posted = [c for c in sandbox.comments(ticket["id"]) if c["body"] == "Refund sent."]
    assert len(posted) == 1 and posted[0]["id"] == comment_id


def test_agent_reply_yields_a_derived_adoption_apart_from_clicks(services, sandbox):
    services.sent_replies = record_sent_reply  # as the composition root wires it
    ticket = sandbox.create_ticket("Reset", "The password reset email never arrives.", CUSTOMER)
    services.poller.poll()
    run_worker(services)
    draft_a = rows(services.db, "SELECT text FROM rag_drafts WHERE label = 'A'")[0][0]
    sandbox.add_comment(ticket["id"], draft_a, public=True, author="agent")
    services.poller.poll()
    services.poller.poll()  # a second read of the same reply adds nothing
    derived = rows(
        services.db, "SELECT closest_label, adoption, similarity_a FROM zendesk_derived_adoptions"
    )
    assert derived == [("A", "as_is", 1.0)]
    assert len(rows(services.db, "SELECT 1 FROM zendesk_draft_requests")) == 1
    # the reply sent is feedback of its own source, in a slot apart from any agent's click
    [(kind, value, source, subject, agent, rationale, draft_id)] = rows(
        services.db,
        "SELECT kind, value, source, subject, agent_id, rationale, draft_id FROM feedback_events",
    )
    assert (kind, value, source, subject) == ("adoption", "as_is", "zendesk", "sent_reply")
    assert agent.startswith("zendesk:") and rationale["label"] == "A"
    assert rationale["sent_reply"].strip() == draft_a.strip()
    assert draft_id == rows(services.db, "SELECT id FROM rag_drafts WHERE label = 'A'")[0][0]


def test_status_reports_health_counts_and_errors(services, sandbox):
    sandbox.create_ticket("Hi", "Where is my order?", CUSTOMER)
    services.poller.poll()
    report = setup.status(services)
    assert report["connection"].startswith("ok (agent@sandbox.example")
    assert report["tickets.stored"] == 1 and report["tickets.last_error"] is None
    assert report["webhook_secret"] == "missing"


def test_macros_and_solved_tickets_become_knowledge_when_enabled(settings, kb_db, sandbox):
    enabled = settings.model_copy(
        update={"zendesk_sync_macros": True, "zendesk_sync_solved_tickets": True}
    )
    services = ZendeskServices(enabled, kb_db, build_deferrer(kb_db.url))
    sandbox.add_macro("Refund delay", "Refunds take up to 10 days at some banks.")
    sandbox.add_macro("Retired", "Old text", active=False)
    ticket = sandbox.create_ticket("Thermostat", "No heat, call me at +1 202-555-0147", CUSTOMER)
    sandbox.add_comment(ticket["id"], "Please check the C-wire on the R terminal.", author="agent")
    sandbox.set_status(ticket["id"], "solved")
    services.poller.poll()
    reports = services.sync_kb()
    assert reports[helpcenter.MACROS].added == 1
    assert reports[helpcenter.CASES].added == 1
    case = rows(kb_db, "SELECT body FROM kb_documents WHERE source = %s", helpcenter.CASES)[0][0]
    assert "[PHONE]" in case and "202-555" not in case and "C-wire" in case
    macro = rows(kb_db, "SELECT title FROM kb_documents WHERE source = %s", helpcenter.MACROS)
    assert macro == [("Refund delay",)]


def test_cli_connect_status_sync_and_poll(settings, sandbox, web):
    from typer.testing import CliRunner

    from aitl.app.cli import app

    env = {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AITL_DATA_DIR": str(settings.data_dir),
        "AITL_ZENDESK_BASE_URL": sandbox.url,
        "AITL_PUBLIC_URL": web.url,
    }
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    sandbox.add_article("Gift wrapping", "<p>We gift wrap any order for 4 euros.</p>")
    sandbox.create_ticket("Hi", "Where is my order?", CUSTOMER)
    out = run("zendesk", "connect", "--email", sandbox.agent_email, "--token", sandbox.api_token)
    assert "webhook" in out and "created" in out
    assert "added 1" in run("zendesk", "sync-kb")
    assert "1 tickets seen, 1 synced, 1 drafts requested" in run("zendesk", "poll")
    status = run("zendesk", "status")
    assert "ok (agent@sandbox.example" in status and "configured" in status
