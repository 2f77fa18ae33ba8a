"""The local Zendesk sandbox, driven through Zenpy exactly as the connector drives Zendesk:
Support, the cursor export, Help Center, webhooks, triggers, auth, injected faults, and
signed webhook deliveries checked against Zendesk's documented signing scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket, Trigger, User, Webhook
from zenpy.lib.api_objects.help_centre_objects import Article
from zenpy.lib.exception import APIException, RecordNotFoundException

from aitl.core.servers import RunningServer, serve_in_thread
from sandboxes.zendesk.server import ZendeskSandbox, create_app, sign
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "zendesk" / "zendesk-go"
EVENT_FIXTURE = "test_files/requests/webhook/user/group_membership_created.json"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
EVENTS = [
    "zen:event-type:ticket.created",
    "zen:event-type:ticket.comment_added",
    "zen:event-type:ticket.status_changed",
]


@pytest.fixture
def sandbox() -> Iterator[ZendeskSandbox]:
    box = ZendeskSandbox(deliver_in_background=False)
    yield box
    box.close()


@pytest.fixture
def api(sandbox: ZendeskSandbox) -> Iterator[RunningServer]:
    with serve_in_thread(create_app(sandbox)) as server:
        yield server


def zenpy_for(
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    email: str = "agent@sandbox.example",
    token: str = "sandbox-token",
    timeout: float | None = None,
) -> Zenpy:
    """Zenpy builds https://{subdomain}.{domain}; "127" + "0.0.1:<port>" and a forced http
    scheme make that the local server."""
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    domain = f"0.0.1:{server.port}"
    return Zenpy(subdomain="127", domain=domain, email=email, token=token, timeout=timeout)


@pytest.fixture
def zd(api: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Zenpy:
    return zenpy_for(api, monkeypatch)


class Receiver:
    """A webhook endpoint that records each request and answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])

    async def hook(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.body()))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    def envelopes(self) -> list[dict]:
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    recorder = Receiver()
    app = Starlette(routes=[Route("/hook", recorder.hook, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield recorder, f"{server.url}/hook"


def expected_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """Zendesk's scheme written out independently of the sandbox's ``sign``."""
    message = headers["x-zendesk-webhook-signature-timestamp"].encode() + body
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


# --- servers ------------------------------------------------------------------------------


def test_serve_in_thread_picks_a_free_port_and_stops() -> None:
    app = Starlette(routes=[Route("/", lambda _: Response("up"))])
    with serve_in_thread(app) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url).text == "up"
    assert not server.thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
        pass


# --- auth and users -----------------------------------------------------------------------


def test_users_me_is_the_configured_agent(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    me = zd.users.me()
    assert (me.id, me.email, me.role) == (sandbox.agent["id"], "agent@sandbox.example", "admin")
    assert me.url.endswith(f"/api/v2/users/{me.id}.json")


def test_wrong_token_is_401_with_zendesks_error(
    api: RunningServer, monkeypatch: pytest.MonkeyPatch, sandbox: ZendeskSandbox
) -> None:
    with pytest.raises(APIException) as caught:
        zenpy_for(api, monkeypatch, token="wrong").users.me()
    assert caught.value.response.status_code == 401
    assert caught.value.response.json() == {"error": "Couldn't authenticate you"}
    plain = httpx.get(f"{api.url}/api/v2/users/me.json", auth=("agent@sandbox.example", "x"))
    assert plain.status_code == 401
    assert [r.status for r in sandbox.requests] == [401, 401]


# --- tickets ------------------------------------------------------------------------------


def create_via_zenpy(zd: Zenpy) -> Ticket:
    created = zd.tickets.create(
        Ticket(
            subject="Cannot log in",
            comment=Comment(body="Password reset mail never arrives."),
            requester=User(name="Ann Customer", email="ann@example.com"),
            tags=["login"],
        )
    )
    return created


def test_ticket_create_returns_ticket_and_audit_and_shows(zd: Zenpy) -> None:
    created = create_via_zenpy(zd)
    requester = zd.users(id=created.ticket.requester_id)
    assert (requester.email, requester.role) == ("ann@example.com", "end-user")
    first = created.audit.events[0]
    assert (first["type"], first["author_id"], first["public"]) == ("Comment", requester.id, True)
    shown = zd.tickets(id=created.ticket.id)
    assert (shown.subject, shown.status, shown.tags) == ("Cannot log in", "new", ["login"])
    assert shown.description == "Password reset mail never arrives."


def test_update_adds_internal_note_and_public_reply_with_audits(
    zd: Zenpy, sandbox: ZendeskSandbox
) -> None:
    ticket = create_via_zenpy(zd).ticket
    note = zd.tickets.update(Ticket(id=ticket.id, comment=Comment(body="Check SPF", public=False)))
    event = note.audit.events[0]
    assert (event["type"], event["public"], event["body"]) == ("Comment", False, "Check SPF")
    assert (note.audit.ticket_id, note.audit.author_id) == (ticket.id, sandbox.agent["id"])

    reply = Ticket(id=ticket.id, status="pending")
    reply.comment = Comment(html_body="<p>Try <b>again</b> now.</p>", public=True)
    answered = zd.tickets.update(reply)
    kinds = {e["type"]: e for e in answered.audit.events}
    assert kinds["Comment"]["plain_body"] == "Try again now." and kinds["Comment"]["public"]
    assert (kinds["Change"]["previous_value"], kinds["Change"]["value"]) == ("new", "pending")

    listed = list(zd.tickets.comments(ticket=ticket.id))
    assert [(c.public, c.author_id) for c in listed] == [
        (True, ticket.requester_id),
        (False, sandbox.agent["id"]),
        (True, sandbox.agent["id"]),
    ]
    assert listed[1].id == event["id"] and listed[1].audit_id == note.audit.id


def test_comments_cursor_pagination_follows_links(
    api: RunningServer, sandbox: ZendeskSandbox
) -> None:
    ticket = sandbox.create_ticket("Paging", "first", "p@example.com")
    for n in range(4):
        sandbox.add_comment(ticket["id"], f"reply {n}", author="agent")
    url: str | None = f"{api.url}/api/v2/tickets/{ticket['id']}/comments.json?page[size]=2"
    bodies = []
    while url:
        page = httpx.get(url, auth=("agent@sandbox.example/token", "sandbox-token")).json()
        bodies += [c["body"] for c in page["comments"]]
        url = page["links"]["next"] if page["meta"]["has_more"] else None
    assert bodies == ["first", "reply 0", "reply 1", "reply 2", "reply 3"]


def test_closed_ticket_refuses_updates_with_422(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    ticket = sandbox.create_ticket("Done", "thanks", "d@example.com")
    sandbox.set_status(ticket["id"], "closed")
    with pytest.raises(APIException) as caught:
        zd.tickets.update(Ticket(id=ticket["id"], comment=Comment(body="late")))
    assert caught.value.response.status_code == 422
    assert caught.value.response.json()["error"] == "RecordInvalid"


def test_invalid_create_is_422_and_leaves_no_ticket(
    api: RunningServer, sandbox: ZendeskSandbox
) -> None:
    auth = ("agent@sandbox.example/token", "sandbox-token")
    body = {"ticket": {"subject": "Ghost", "requester_id": 999, "comment": {"body": "hi"}}}
    answer = httpx.post(f"{api.url}/api/v2/tickets.json", json=body, auth=auth)
    assert answer.status_code == 422 and answer.json()["error"] == "RecordInvalid"
    assert sandbox.tickets() == []


# --- incremental export -------------------------------------------------------------------


def test_cursor_export_pages_through_zenpy_and_resumes(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    ids = [sandbox.create_ticket(f"T{n}", "body", f"c{n}@example.com")["id"] for n in range(5)]

    export = zd.tickets.incremental(start_time=0, paginate_by_time=False, per_page=2)
    assert [t.id for t in export] == ids
    assert export.end_of_stream is True
    pages = [r for r in sandbox.requests if r.path.endswith("/incremental/tickets/cursor.json")]
    assert len(pages) == 3 and all("per_page=2" in r.query for r in pages)
    stored = export.after_cursor

    newcomer = sandbox.create_ticket("Later", "new one", "late@example.com")
    sandbox.set_status(ids[1], "open")
    resumed = zd.tickets.incremental(cursor=stored, paginate_by_time=False)
    assert [t.id for t in resumed] == [newcomer["id"], ids[1]]
    again = zd.tickets.incremental(cursor=resumed.after_cursor, paginate_by_time=False)
    assert list(again) == [] and again.end_of_stream is True


def test_export_start_time_filters_and_bad_cursor_is_400(
    api: RunningServer, sandbox: ZendeskSandbox
) -> None:
    sandbox.create_ticket("Old", "body", "o@example.com")
    auth = ("agent@sandbox.example/token", "sandbox-token")
    future = int(time.time()) + 3600
    page = httpx.get(
        f"{api.url}/api/v2/incremental/tickets/cursor.json?start_time={future}", auth=auth
    )
    assert page.json()["tickets"] == [] and page.json()["end_of_stream"] is True
    later = sandbox.create_ticket("New", "body", "n@example.com")
    resumed = httpx.get(page.json()["after_url"], auth=auth).json()
    assert [t["id"] for t in resumed["tickets"]] == [later["id"]]
    bad = httpx.get(f"{api.url}/api/v2/incremental/tickets/cursor.json?cursor=%25%25", auth=auth)
    assert bad.status_code == 400


# --- Help Center and macros ---------------------------------------------------------------


def test_help_center_listings_drafts_archive_and_create(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    kept = sandbox.add_article("Reset your password", "<p>Open <b>Settings</b>.</p>")
    draft = sandbox.add_article("Refunds (draft)", "<p>WIP</p>", draft=True)
    gone = sandbox.add_article("Old pricing", "<p>2019</p>")
    german = sandbox.add_article("Passwort", "<p>Einstellungen</p>", locale="de")
    sandbox.archive_article(gone["id"])

    listed = {a.id: a for a in zd.help_center.articles()}
    assert set(listed) == {kept["id"], draft["id"], german["id"]}
    assert listed[draft["id"]].draft is True and listed[kept["id"]].draft is False
    assert listed[kept["id"]].body == "<p>Open <b>Settings</b>.</p>"
    assert listed[kept["id"]].html_url.endswith(
        f"/hc/en-us/articles/{kept['id']}-reset-your-password"
    )
    with pytest.raises(RecordNotFoundException):
        zd.help_center.articles(id=gone["id"])
    in_section = zd.help_center.sections.articles(section=sandbox.default_section_id)
    assert [a.id for a in in_section] == [kept["id"], draft["id"]]

    assert [s.id for s in zd.help_center.sections()] == [sandbox.default_section_id]
    assert [c.name for c in zd.help_center.categories()] == ["General"]
    changed = [a.id for a in zd.help_center.articles.incremental(start_time=0)]
    assert changed == [kept["id"], draft["id"], german["id"]]

    article = Article(
        title="Digest: missing refunds article",
        body="<p>x</p>",
        draft=True,
        permission_group_id=sandbox.default_permission_group_id,  # Guide requires one
        user_segment_id=sandbox.staff_segment_id,
    )
    created = zd.help_center.articles.create(section=sandbox.default_section_id, article=article)
    assert created.draft is True and sandbox.article(created.id)["title"].startswith("Digest")


def test_help_center_incremental_shape(api: RunningServer, sandbox: ZendeskSandbox) -> None:
    first = sandbox.add_article("One", "<p>1</p>")
    auth = ("agent@sandbox.example/token", "sandbox-token")
    body = httpx.get(f"{api.url}/api/v2/help_center/incremental/articles?start_time=0", auth=auth)
    page = body.json()
    assert set(page) >= {"articles", "next_page", "end_time", "count"}
    assert page["count"] == 1 and page["next_page"] is None
    assert page["end_time"] >= int(time.time()) - 5 and page["articles"][0]["id"] == first["id"]


def test_active_macros_carry_comment_value(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    sandbox.add_macro("Refund issued", "We have refunded your order.")
    sandbox.add_macro("Retired", "Old text", active=False)
    active = list(zd.macros(active=True))
    assert [m.title for m in active] == ["Refund issued"]
    assert {"field": "comment_value", "value": "We have refunded your order."} in active[0].actions
    assert len(list(zd.macros())) == 2


# --- webhooks and triggers ----------------------------------------------------------------


def test_webhooks_crud_and_signing_secret(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    spec = Webhook(
        name="AITL",
        endpoint="https://aitl.example/zendesk/webhook",
        http_method="POST",
        request_format="json",
        status="active",
        subscriptions=EVENTS,
    )
    created = zd.webhooks.create(spec)
    assert created.subscriptions == EVENTS and created.status == "active"
    assert [w.id for w in zd.webhooks.list()] == [created.id]

    created.name = "AITL copilot"
    assert zd.webhooks.patch(created).status_code == 204
    assert zd.webhooks(id=created.id).name == "AITL copilot"
    spec.status = "inactive"
    assert zd.webhooks.update(created.id, spec).status_code == 204
    assert sandbox.webhook(created.id)["status"] == "inactive"

    secret = zd.webhooks.show_secret(created.id)
    assert secret.algorithm == "SHA256" and secret.secret == sandbox.signing_secret(created.id)
    rotated = zd.webhooks.reset_secret(created.id)
    assert rotated.secret != secret.secret

    assert zd.webhooks.delete(created).status_code == 204
    assert list(zd.webhooks.list()) == []
    with pytest.raises(RecordNotFoundException):
        zd.webhooks(id=created.id)


def test_triggers_crud(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    body = json.dumps({"ticket_id": "{{ticket.id}}", "event": "comment"})
    trigger = zd.triggers.create(
        Trigger(
            title="Notify AITL",
            conditions={"all": [{"field": "update_type", "operator": "is", "value": "Change"}]},
            actions=[{"field": "notification_webhook", "value": ["01HWEBHOOK", body]}],
        )
    )
    assert trigger.active is True and trigger.actions[0]["value"] == ["01HWEBHOOK", body]
    assert [t.id for t in zd.triggers()] == [trigger.id]
    trigger.title, trigger.active = "Notify AITL (off)", False
    updated = zd.triggers.update(trigger)
    assert (updated.title, updated.active) == ("Notify AITL (off)", False)
    assert zd.triggers(id=trigger.id).title == "Notify AITL (off)"
    assert zd.triggers.delete(trigger).status_code == 204
    assert sandbox.triggers() == []


# --- faults -------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    sandbox.fail("GET", r"/users/me", status=429, retry_after=1)
    started = time.monotonic()
    assert zd.users.me().id == sandbox.agent["id"]
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in sandbox.requests] == [429, 200]


def test_injected_500_surfaces_as_api_error(zd: Zenpy, sandbox: ZendeskSandbox) -> None:
    ticket = sandbox.create_ticket("Boom", "body", "b@example.com")
    sandbox.fail("GET", rf"/tickets/{ticket['id']}\.json$", status=500, retry_after=None)
    with pytest.raises(APIException) as caught:
        zd.tickets(id=ticket["id"])
    assert caught.value.response.status_code == 500
    assert "retry-after" not in caught.value.response.headers
    assert zd.tickets(id=ticket["id"]).subject == "Boom"


def test_delay_after_apply_times_out_the_client_but_writes_the_comment(
    api: RunningServer, monkeypatch: pytest.MonkeyPatch, sandbox: ZendeskSandbox
) -> None:
    ticket = sandbox.create_ticket("Slow", "body", "s@example.com")
    sandbox.delay("PUT", r"/tickets/\d+", seconds=1.0)
    impatient = zenpy_for(api, monkeypatch, timeout=0.3)
    with pytest.raises(requests.exceptions.Timeout):
        impatient.tickets.update(Ticket(id=ticket["id"], comment=Comment(body="Draft A")))
    assert [c["body"] for c in sandbox.comments(ticket["id"])] == ["body", "Draft A"]


# --- webhook delivery ---------------------------------------------------------------------


def test_signing_function_reproduces_zendesks_vector() -> None:
    vector = json.loads((FIXTURES / "SIGNATURE_TEST_VECTOR.json").read_text())
    body = (FIXTURES / vector["body_file"]).read_bytes()
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256"]
    headers = vector["headers"]
    timestamp = headers["X-Zendesk-Webhook-Signature-Timestamp"]
    assert sign(vector["signing_secret"], timestamp, body) == headers["X-Zendesk-Webhook-Signature"]
    assert (
        sign(vector["signing_secret"], timestamp, body + b" ")
        != headers["X-Zendesk-Webhook-Signature"]
    )


def drive_one_ticket(sandbox: ZendeskSandbox) -> dict:
    ticket = sandbox.create_ticket("Refund?", "Where is it?", "r@example.com", priority="high")
    sandbox.add_comment(ticket["id"], "Checking.", public=False, author="agent")
    sandbox.set_status(ticket["id"], "pending")
    return ticket


def test_events_reach_each_subscribed_active_webhook_signed(
    zd: Zenpy, sandbox: ZendeskSandbox, receiver: tuple[Receiver, str]
) -> None:
    recorder, endpoint = receiver
    hook = zd.webhooks.create(Webhook(name="AITL", endpoint=endpoint, subscriptions=EVENTS))
    comments_only = {"name": "comments", "endpoint": endpoint, "subscriptions": [EVENTS[1]]}
    comments_hook = sandbox.create_webhook(comments_only)
    off = sandbox.create_webhook({"name": "off", "endpoint": endpoint, "subscriptions": EVENTS})
    sandbox.update_webhook(off["id"], {"status": "inactive"})

    drive_one_ticket(sandbox)
    assert recorder.calls == []
    sandbox.deliver_pending()

    received = [(h["x-zendesk-webhook-id"], json.loads(b)["type"]) for h, b in recorder.calls]
    assert received == [
        (hook.id, EVENTS[0]),
        (hook.id, EVENTS[1]),
        (comments_hook["id"], EVENTS[1]),
        (hook.id, EVENTS[2]),
    ]
    for headers, body in recorder.calls:
        secret = sandbox.signing_secret(headers["x-zendesk-webhook-id"])
        assert headers["x-zendesk-webhook-signature"] == expected_signature(secret, headers, body)
        assert headers["content-type"] == "application/json"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", headers[TIMESTAMP])
        assert headers["x-zendesk-webhook-invocation-id"]


def test_event_envelopes_have_zendesks_shape(
    sandbox: ZendeskSandbox, receiver: tuple[Receiver, str]
) -> None:
    recorder, endpoint = receiver
    sandbox.create_webhook({"name": "AITL", "endpoint": endpoint, "subscriptions": EVENTS})
    ticket = drive_one_ticket(sandbox)
    sandbox.deliver_pending()

    fixture = json.loads((FIXTURES / EVENT_FIXTURE).read_text())
    created, comment, status = recorder.envelopes()
    assert all(set(e) == set(fixture) for e in (created, comment, status))
    assert len({e["id"] for e in (created, comment, status)}) == 3
    assert created["subject"] == f"zen:ticket:{ticket['id']}" and created["event"] == {}
    assert created["zendesk_event_version"] == "2022-11-06"
    detail = created["detail"]
    assert (detail["id"], detail["status"], detail["priority"]) == (
        str(ticket["id"]),
        "NEW",
        "HIGH",
    )
    assert detail["requester_id"] == str(ticket["requester_id"])
    author = comment["event"]["comment"]["author"]
    assert comment["event"]["comment"]["is_public"] is False and author["is_staff"] is True
    assert comment["event"]["comment"]["body"] == "Checking."
    assert status["event"] == {"current": "PENDING", "previous": "NEW"}


def test_redelivery_repeats_the_body_and_id_with_a_fresh_signature(
    sandbox: ZendeskSandbox, receiver: tuple[Receiver, str]
) -> None:
    recorder, endpoint = receiver
    hook = sandbox.create_webhook({"name": "AITL", "endpoint": endpoint, "subscriptions": EVENTS})
    sandbox.create_ticket("Dup", "Hello", "dup@example.com")
    (first,) = sandbox.deliver_pending()
    sandbox.redeliver(first.event_id)
    (h1, b1), (h2, b2) = recorder.calls
    assert b1 == b2 and json.loads(b2)["id"] == first.event_id
    assert h1["x-zendesk-webhook-invocation-id"] == h2["x-zendesk-webhook-invocation-id"]
    secret = sandbox.signing_secret(hook["id"])
    assert h2["x-zendesk-webhook-signature"] == expected_signature(secret, h2, b2)


def test_failed_deliveries_are_retried_until_accepted(
    sandbox: ZendeskSandbox, receiver: tuple[Receiver, str]
) -> None:
    recorder, endpoint = receiver
    recorder.statuses = [503, 500]
    sandbox.create_webhook({"name": "AITL", "endpoint": endpoint, "subscriptions": EVENTS})
    sandbox.create_ticket("Retry", "Hello", "retry@example.com")
    states = [sandbox.deliver_pending()[0].state for _ in range(3)]
    assert states == ["pending", "pending", "delivered"]
    assert len(recorder.calls) == 3 and len({b for _, b in recorder.calls}) == 1
    assert sandbox.deliver_pending() == []


def test_background_delivery_sends_without_being_asked(receiver: tuple[Receiver, str]) -> None:
    recorder, endpoint = receiver
    box = ZendeskSandbox()
    try:
        box.create_webhook({"name": "AITL", "endpoint": endpoint, "subscriptions": EVENTS})
        ticket = box.create_ticket("Auto", "Hello", "auto@example.com")
        box.add_comment(ticket["id"], "More detail", author="customer")
        assert box.outbox.wait_idle(timeout=5)
        assert [e["type"] for e in recorder.envelopes()] == EVENTS[:2]
    finally:
        box.close()


# --- the page -----------------------------------------------------------------------------


def test_page_lists_tickets_and_marks_internal_notes_escaped(
    api: RunningServer, sandbox: ZendeskSandbox
) -> None:
    ticket = sandbox.create_ticket("<script>alert(1)</script>", "Hi & bye", "x@example.com")
    sandbox.add_comment(ticket["id"], "<b>note</b>", public=False, author="agent")
    listing = httpx.get(f"{api.url}/sandbox/zendesk").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>" not in listing
    assert f'href="/sandbox/zendesk/tickets/{ticket["id"]}"' in listing
    page = httpx.get(f"{api.url}/sandbox/zendesk/tickets/{ticket['id']}").text
    assert "Hi &amp; bye" in page and "&lt;b&gt;note&lt;/b&gt;" in page
    assert page.count("Internal note") == 1 and page.count("Public reply") == 1
    assert httpx.get(f"{api.url}/sandbox/zendesk/tickets/999999").status_code == 404
