"""The Slack sandbox's page, driven over HTTP as the page's script drives it, against a real
Bolt app that verifies Slack's signatures: a forwarded click that Bolt accepts is one Slack
could have sent. Also the state the page polls, uploaded files, and the page's own files."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_bolt import Ack, App
from slack_bolt.adapter.starlette import SlackRequestHandler
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aitl.core.servers import RunningServer, serve_in_thread
from aitl.core.settings import PROJECT_ROOT
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import (
    AGENT_ALICE,
    AGENT_BOB,
    BOT_TOKEN,
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
    MethodError,
)

STATIC = PROJECT_ROOT / "sandboxes" / "slack" / "static"
FORM = "application/x-www-form-urlencoded"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # the signature is all the page relies on

DRAFT = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Draft for *ticket 42*"}},
    {
        "type": "actions",
        "block_id": "draft",
        "elements": [
            {
                "type": "button",
                "action_id": "edit",
                "text": {"type": "plain_text", "text": "Edit"},
                "value": "ticket-42",
                "style": "primary",
            },
            {
                "type": "button",
                "action_id": "open",
                "text": {"type": "plain_text", "text": "Missing?"},
                "value": "ticket-42",
            },
        ],
    },
]
MODAL = {
    "type": "modal",
    "callback_id": "note",
    "notify_on_close": True,
    "title": {"type": "plain_text", "text": "Missing knowledge"},
    "submit": {"type": "plain_text", "text": "Save"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reply",
            "optional": True,
            "label": {"type": "plain_text", "text": "What was missing?"},
            "element": {"type": "plain_text_input", "action_id": "body", "multiline": True},
        },
        {
            "type": "input",
            "block_id": "article",
            "optional": True,
            "label": {"type": "plain_text", "text": "Search"},
            "element": {"type": "external_select", "action_id": "kb_search"},
        },
    ],
}
HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]}


# --- a sandbox, and a Bolt app behind it --------------------------------------------------


@pytest.fixture
def sandbox() -> SlackSandbox:
    return SlackSandbox()


@pytest.fixture
def server(sandbox: SlackSandbox) -> Iterator[RunningServer]:
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def slack(server: RunningServer) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=f"{server.url}/api/")


def bolt_app(client: WebClient, seen: list[str]) -> App:
    """Listeners like the bot's, acking before they answer (``process_before_response``
    keeps the test deterministic: the app's calls are done when its answer arrives)."""
    app = App(signing_secret=SIGNING_SECRET, client=client, process_before_response=True)

    @app.action("edit")
    def edit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.append(f"edit:{body['actions'][0]['value']}")
        channel, ts = body["channel"]["id"], body["container"]["message_ts"]
        client.chat_update(channel=channel, ts=ts, text=f"Edited by <@{body['user']['id']}>")

    @app.action("open")
    def open_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    @app.view("note")
    def submit(ack: Ack, view: dict[str, Any], client: WebClient) -> None:
        reply = view["state"]["values"]["reply"]["body"]["value"]
        if not reply:
            ack(response_action="errors", errors={"reply": "Write what was missing"})
            return
        ack()
        client.chat_postMessage(channel=SUPPORT_CHANNEL, text=f"Noted: {reply}")

    @app.view_closed("note")
    def closed(ack: Ack) -> None:
        ack()
        seen.append("view_closed")

    @app.options("kb_search")
    def search(ack: Ack, payload: dict[str, Any]) -> None:
        text = {"type": "plain_text", "text": f"Refunds ({payload['value']})"}
        ack(options=[{"text": text, "value": "kb-1"}])

    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        client.views_publish(user_id=event["user"], view=HOME)

    return app


@pytest.fixture
def seen(sandbox: SlackSandbox, slack: WebClient) -> Iterator[list[str]]:
    """What the app received: the content type of each request, then what listeners saw."""
    seen: list[str] = []
    handler = SlackRequestHandler(bolt_app(slack, seen))

    async def events(request: Request) -> Response:
        seen.append(request.headers.get("content-type", ""))
        return await handler.handle(request)

    app = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
    with serve_in_thread(app) as running:
        sandbox.app_url = f"{running.url}/slack/events"
        yield seen


def act(server: RunningServer, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/sandbox/act", json={"user": AGENT_ALICE} | body, timeout=10)


def state(server: RunningServer, user: str = AGENT_ALICE, since: int | None = None) -> Any:
    params = {"user": user} | ({} if since is None else {"since": str(since)})
    return httpx.get(f"{server.url}/sandbox/state", params=params).json()


def channel(snapshot: dict[str, Any], channel_id: str = SUPPORT_CHANNEL) -> dict[str, Any]:
    return next(c for c in snapshot["channels"] if c["id"] == channel_id)


def post_draft(slack: WebClient) -> str:
    return slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="draft", blocks=DRAFT)["ts"]


def open_modal(server: RunningServer, ts: str) -> dict[str, Any]:
    assert act(server, kind="block_actions", channel=SUPPORT_CHANNEL, ts=ts, action_id="open")
    return state(server)["modal"]


# --- the page and its state ---------------------------------------------------------------


def test_the_page_and_its_files_are_served(server: RunningServer) -> None:
    for path in ("/", "/sandbox/slack"):
        page = httpx.get(f"{server.url}{path}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/sandbox/static/app.js">' in page.text
        assert "script-src" not in page.headers["content-security-policy"]  # 'self' only
    script = httpx.get(f"{server.url}/sandbox/static/app.js")
    style = httpx.get(f"{server.url}/sandbox/static/style.css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


def test_state_is_sent_again_only_when_the_version_moves(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox
) -> None:
    first = httpx.get(f"{server.url}/sandbox/state").json()  # no user: the first agent
    assert (first["user"], first["changed"], first["app_url"]) == (AGENT_ALICE, True, None)
    assert {u["name"] for u in first["users"]} >= {"alice", "bob", "aitl"}
    assert state(server, since=first["version"]) == {"version": first["version"], "changed": False}
    post_draft(slack)
    later = state(server, since=first["version"])
    assert later["changed"] and later["version"] > first["version"]
    assert channel(later)["messages"][0]["blocks"][1]["block_id"] == "draft"
    missing = httpx.get(f"{server.url}/sandbox/state", params={"user": "U0NOBODY"})
    assert missing.status_code == 404 and "U0NOBODY" in missing.json()["error"]


def test_threads_ephemeral_messages_and_dms_are_per_user(
    server: RunningServer, slack: WebClient
) -> None:
    parent = post_draft(slack)
    slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="a reply", thread_ts=parent)
    slack.chat_postEphemeral(
        channel=SUPPORT_CHANNEL, user=AGENT_ALICE, text="only alice", thread_ts=parent
    )
    slack.chat_postMessage(channel=AGENT_ALICE, text="hello alice")  # her DM with the app
    alice, bob = state(server), state(server, AGENT_BOB)
    [root] = channel(alice)["messages"]
    assert [(r["text"], r.get("is_ephemeral", False)) for r in root["replies"]] == [
        ("a reply", False),
        ("only alice", True),
    ]
    assert [r["text"] for r in channel(bob)["messages"][0]["replies"]] == ["a reply"]
    [dm] = [c for c in alice["channels"] if c["kind"] == "im"]
    assert (dm["label"], dm["messages"][0]["text"]) == ("aitl", "hello alice")
    assert all(c["kind"] == "channel" for c in bob["channels"])


def test_message_text_is_data_and_the_script_never_parses_it(
    server: RunningServer, slack: WebClient
) -> None:
    slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="<script>alert(1)</script>")
    answer = httpx.get(f"{server.url}/sandbox/state", params={"user": AGENT_ALICE})
    assert answer.headers["content-type"] == "application/json"
    assert channel(answer.json())["messages"][0]["text"] == "<script>alert(1)</script>"
    script = (STATIC / "app.js").read_text()
    assert "textContent" in script
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


def test_uploaded_png_is_served_with_its_mimetype(server: RunningServer, slack: WebClient) -> None:
    upload = slack.files_upload_v2(
        channel=SUPPORT_CHANNEL, content=PNG, filename="chart.png", title="Weekly chart"
    )
    file_id = upload["file"]["id"]
    served = httpx.get(f"{server.url}/sandbox/files/{file_id}")
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"
    [shared] = channel(state(server))["messages"][0]["files"]
    assert (shared["id"], shared["title"]) == (file_id, "Weekly chart")
    assert httpx.get(f"{server.url}/sandbox/files/F0NOPE").status_code == 404


# --- acts forwarded to the app ------------------------------------------------------------


def test_a_click_reaches_the_app_signed_and_the_message_changes(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox, seen: list[str]
) -> None:
    ts = post_draft(slack)
    before = state(server)["version"]
    answer = act(server, kind="block_actions", channel=SUPPORT_CHANNEL, ts=ts, action_id="edit")
    assert (answer.status_code, answer.json()) == (200, {"status": 200})
    assert seen == [FORM, "edit:ticket-42"]  # Bolt ran the listener: the signature held
    after = state(server, since=before)
    assert after["version"] > before
    assert channel(after)["messages"][0]["text"] == f"Edited by <@{AGENT_ALICE}>"


def test_a_refusal_by_the_app_is_passed_on_to_the_page(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox, seen: list[str]
) -> None:
    ts = post_draft(slack)
    sandbox.signing_secret = "not-the-apps-secret"
    answer = act(server, kind="block_actions", channel=SUPPORT_CHANNEL, ts=ts, action_id="edit")
    assert answer.status_code == 200 and answer.json()["status"] == 401
    assert "HTTP 401" in answer.json()["error"]
    assert seen == [FORM]  # refused before any listener ran
    assert channel(state(server))["messages"][0]["text"] == "draft"


def test_a_submission_shows_the_apps_errors_then_closes(
    server: RunningServer, slack: WebClient, seen: list[str]
) -> None:
    view = open_modal(server, post_draft(slack))
    assert view["callback_id"] == "note"
    empty = {"reply": {"body": {"type": "plain_text_input", "value": None}}}
    refused = act(server, kind="view_submission", view_id=view["id"], values=empty)
    assert refused.json() == {"status": 200, "errors": {"reply": "Write what was missing"}}
    assert state(server)["modal"]["id"] == view["id"]
    filled = {"reply": {"body": {"type": "plain_text_input", "value": "the refund macro"}}}
    accepted = act(server, kind="view_submission", view_id=view["id"], values=filled)
    assert accepted.json() == {"status": 200}
    after = state(server)
    assert after["modal"] is None
    assert channel(after)["messages"][-1]["text"] == "Noted: the refund macro"


def test_external_select_options_come_back_from_the_app(
    server: RunningServer, slack: WebClient, seen: list[str]
) -> None:
    view = open_modal(server, post_draft(slack))
    answer = act(
        server,
        kind="block_suggestion",
        view_id=view["id"],
        action_id="kb_search",
        block_id="article",
        value="refu",
    )
    assert answer.status_code == 200
    assert answer.json()["options"] == [
        {"text": {"type": "plain_text", "text": "Refunds (refu)"}, "value": "kb-1"}
    ]


def test_closing_notifies_the_app_only_when_asked(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox, seen: list[str]
) -> None:
    view = open_modal(server, post_draft(slack))
    assert act(server, kind="view_closed", view_id=view["id"]).json() == {"status": 200}
    assert "view_closed" in seen and state(server)["modal"] is None
    quiet = slack.views_open(trigger_id=sandbox.issue_trigger(AGENT_ALICE), view=MODAL)["view"]
    sandbox.app_url = None  # closing locally needs no app
    assert act(server, kind="close_view", view_id=quiet["id"]).json() == {"status": None}
    assert state(server)["modal"] is None


def test_opening_app_home_sends_a_json_event(
    server: RunningServer, sandbox: SlackSandbox, seen: list[str]
) -> None:
    assert act(server, kind="app_home_opened").json() == {"status": 200}
    assert seen == ["application/json"]
    assert state(server)["home"]["blocks"][0]["text"]["text"] == "Hi"


# --- refusals -------------------------------------------------------------------------------


def test_without_an_app_the_page_gets_a_clear_409(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox
) -> None:
    ts = post_draft(slack)
    before = sandbox.version
    answer = act(server, kind="block_actions", channel=SUPPORT_CHANNEL, ts=ts, action_id="edit")
    assert answer.status_code == 409 and "app_url" in answer.json()["error"]
    assert sandbox.version == before


def test_an_unreachable_app_is_a_502(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sandbox.app_url = f"http://127.0.0.1:{port}/slack/events"
    ts = post_draft(slack)
    answer = act(server, kind="block_actions", channel=SUPPORT_CHANNEL, ts=ts, action_id="edit")
    assert answer.status_code == 502 and "unreachable" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"kind": "teleport"}, 400, "unknown kind"),
        ({"kind": "block_actions", "channel": SUPPORT_CHANNEL}, 400, "required"),
        ({"kind": "app_home_opened", "user": "U0NOBODY"}, 404, "user_not_found"),
        ({"kind": "view_submission", "view_id": "V0NOPE"}, 404, "not_found"),
        ({"kind": "block_actions", "view_id": "V0NOPE", "action_id": "x"}, 404, "not_found"),
    ],
)
def test_malformed_acts_are_refused_readably(
    server: RunningServer, sandbox: SlackSandbox, body: dict[str, Any], status: int, words: str
) -> None:
    sandbox.app_url = "http://127.0.0.1:9/slack/events"  # never reached
    answer = act(server, **body)
    assert answer.status_code == status and words in answer.json()["error"]
    not_json = httpx.post(f"{server.url}/sandbox/act", content=b"{", timeout=5)
    assert not_json.status_code == 400


# --- Slack's side of the answers, on the state itself --------------------------------------


def test_response_actions_update_push_and_clear_the_stack(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    root = slack.views_open(trigger_id=sandbox.issue_trigger(AGENT_ALICE), view=MODAL)["view"]
    pushed = MODAL | {"title": {"type": "plain_text", "text": "Step 2"}}
    push = {"response_action": "push", "view": pushed}
    assert sandbox.answer_submission(AGENT_ALICE, root["id"], push) == {}
    top = sandbox.open_views(AGENT_ALICE)[-1]
    assert (len(sandbox.open_views(AGENT_ALICE)), top["previous_view_id"]) == (2, root["id"])
    updated = MODAL | {"title": {"type": "plain_text", "text": "Step 2, again"}}
    sandbox.answer_submission(
        AGENT_ALICE, top["id"], {"response_action": "update", "view": updated}
    )
    assert sandbox.view(top["id"])["title"]["text"] == "Step 2, again"
    sandbox.answer_submission(AGENT_ALICE, top["id"], None)  # a plain ack closes that view
    assert [v["id"] for v in sandbox.open_views(AGENT_ALICE)] == [root["id"]]
    sandbox.answer_submission(AGENT_ALICE, root["id"], {"response_action": "clear"})
    assert sandbox.open_views(AGENT_ALICE) == []
    with pytest.raises(MethodError):
        sandbox.answer_submission(AGENT_ALICE, root["id"], None)


def test_view_clicks_carry_the_inputs_and_message_suggestions_name_the_message(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    home = HOME | {"blocks": [*MODAL["blocks"], *DRAFT]}
    view = slack.views_publish(user_id=AGENT_ALICE, view=home)["view"]
    values = {"reply": {"body": {"type": "plain_text_input", "value": "typed"}}}
    click = sandbox.block_actions(
        AGENT_ALICE, None, None, "edit", "draft", None, view=view["id"], state_values=values
    )
    assert click["view"]["state"]["values"] == values
    search = {"type": "actions", "block_id": "find", "elements": [MODAL["blocks"][1]["element"]]}
    ts = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x", blocks=[search])["ts"]
    typed = sandbox.block_suggestion(
        AGENT_ALICE, None, "kb_search", "find", "ref", channel=SUPPORT_CHANNEL, message_ts=ts
    )
    assert typed["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": SUPPORT_CHANNEL,
        "is_ephemeral": False,
    }
    assert typed["message"]["ts"] == ts and typed["value"] == "ref"
