"""The local Slack sandbox, driven through a real ``slack_sdk.WebClient`` as the bot drives
Slack: messages, threads, edits, ephemeral messages, views, uploads, response_urls, auth,
injected faults, and payloads signed as Slack signs them, checked by slack_sdk and Bolt."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.starlette import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from aitl.core.servers import RunningServer, serve_in_thread
from sandboxes.slack import state as sandbox_state
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import (
    AGENT_ALICE,
    AGENT_BOB,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
    ElementNotFound,
    encode_event,
    encode_form,
    encode_interactivity,
)
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "slack"
PAYLOADS = FIXTURES / "bolt-python" / "payloads"
BUTTON = {
    "type": "actions",
    "block_id": "draft_actions",
    "elements": [
        {
            "type": "button",
            "action_id": "approve",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": "ticket-42",
        }
    ],
}
MODAL = {
    "type": "modal",
    "callback_id": "edit_draft",
    "private_metadata": "ticket-42",
    "title": {"type": "plain_text", "text": "Edit draft"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reply",
            "label": {"type": "plain_text", "text": "Reply"},
            "element": {"type": "plain_text_input", "action_id": "body"},
        }
    ],
}
HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]}


class Clock:
    """A settable clock for trigger and response_url expiry."""

    def __init__(self) -> None:
        self.now = 1_763_769_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> SlackSandbox:
    return SlackSandbox(clock=clock)


@pytest.fixture
def server(sandbox: SlackSandbox) -> Iterator[RunningServer]:
    with serve(sandbox) as running:
        yield running


def client_for(server: RunningServer, token: str | None = BOT_TOKEN, **kwargs: Any) -> WebClient:
    return WebClient(token=token, base_url=f"{server.url}/api/", **kwargs)


@pytest.fixture
def slack(server: RunningServer) -> WebClient:
    return client_for(server)


def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


# --- auth and plumbing --------------------------------------------------------------------


def test_auth_test_names_the_bot_and_team(slack: WebClient) -> None:
    answer = slack.auth_test()
    assert answer["user_id"] == BOT_USER_ID
    assert (answer["team_id"], answer["bot_id"]) == ("T0SANDBOX", "B0SANDBOX")
    assert answer["url"].startswith("https://")


def test_missing_and_wrong_tokens_are_refused_with_http_200(
    server: RunningServer, sandbox: SlackSandbox
) -> None:
    missing = slack_error(lambda: client_for(server, token=None).auth_test())
    wrong = slack_error(
        lambda: client_for(server, token="xoxb-wrong").chat_postMessage(
            channel=SUPPORT_CHANNEL, text="x"
        )
    )
    assert missing.response["error"] == "not_authed"
    assert wrong.response["error"] == "invalid_auth"
    assert wrong.response.status_code == 200
    assert sandbox.messages(SUPPORT_CHANNEL) == []


def test_get_query_form_and_json_bodies_are_all_accepted(
    server: RunningServer, slack: WebClient, sandbox: SlackSandbox
) -> None:
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    got = httpx.get(f"{server.url}/api/users.info?user={AGENT_ALICE}", headers=headers).json()
    blocks = json.dumps([BUTTON])
    form = slack.api_call("chat.postMessage", data={"channel": SUPPORT_CHANNEL, "blocks": blocks})
    assert got["user"]["name"] == "alice"
    assert form["message"]["blocks"][0]["elements"][0]["action_id"] == "approve"
    assert sandbox.calls("chat.postMessage")[0].params["blocks"] == [BUTTON]  # decoded


def test_unknown_method(slack: WebClient) -> None:
    assert slack_error(lambda: slack.api_call("chat.teleport")).response["error"] == (
        "unknown_method"
    )


# --- messages -----------------------------------------------------------------------------


def test_post_message_returns_increasing_unique_ts(slack: WebClient, sandbox: SlackSandbox) -> None:
    first = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="one")
    second = slack.chat_postMessage(channel="#support", text="two", blocks=[BUTTON])
    assert first["ts"] == "1763769600.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert second["channel"] == SUPPORT_CHANNEL
    assert second["message"]["user"] == BOT_USER_ID
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["one", "two"]


def test_thread_replies_attach_to_their_parent(slack: WebClient, sandbox: SlackSandbox) -> None:
    parent = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="draft")["ts"]
    reply = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="r1", thread_ts=parent)
    nested = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="r2", thread_ts=reply["ts"])
    root = sandbox.message(SUPPORT_CHANNEL, parent)
    assert root["reply_count"] == 2 and root["latest_reply"] == nested["ts"]
    assert [m["text"] for m in sandbox.replies(SUPPORT_CHANNEL, parent)] == ["r1", "r2"]
    assert nested["message"]["thread_ts"] == parent
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["draft"]
    missing = slack_error(
        lambda: slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x", thread_ts="1.000001")
    )
    assert missing.response["error"] == "thread_not_found"


def test_update_keeps_an_edit_history(slack: WebClient, sandbox: SlackSandbox) -> None:
    ts = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="v1", blocks=[BUTTON])["ts"]
    answer = slack.chat_update(channel=SUPPORT_CHANNEL, ts=ts, text="v2")
    assert (answer["ts"], answer["text"]) == (ts, "v2")
    stored = sandbox.message(SUPPORT_CHANNEL, ts)
    assert stored["blocks"][0]["block_id"] == "draft_actions"  # blocks left out are kept
    assert stored["edited"]["user"] == BOT_USER_ID
    assert [m["text"] for m in sandbox.edit_history(SUPPORT_CHANNEL, ts)] == ["v1"]
    gone = slack_error(lambda: slack.chat_update(channel=SUPPORT_CHANNEL, ts="1.1", text="x"))
    assert gone.response["error"] == "message_not_found"


def test_users_messages_cannot_be_updated(slack: WebClient, sandbox: SlackSandbox) -> None:
    ts = sandbox.post_as_user(SUPPORT_CHANNEL, AGENT_ALICE, "mine")["ts"]
    refused = slack_error(lambda: slack.chat_update(channel=SUPPORT_CHANNEL, ts=ts, text="x"))
    assert refused.response["error"] == "cant_update_message"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C0NOPE", "text": "x"}, "channel_not_found"),
        ({"channel": "C0QUIET", "text": "x"}, "not_in_channel"),
        ({"channel": SUPPORT_CHANNEL}, "no_text"),
        ({"channel": SUPPORT_CHANNEL, "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": SUPPORT_CHANNEL, "blocks": [BUTTON] * 51}, "invalid_blocks"),
        ({"channel": SUPPORT_CHANNEL, "blocks": [{"text": "no type"}]}, "invalid_blocks"),
    ],
)
def test_post_message_errors_change_nothing(
    slack: WebClient, sandbox: SlackSandbox, kwargs: dict[str, Any], error: str
) -> None:
    sandbox.add_channel("C0QUIET", "quiet", members=[AGENT_ALICE], bot_member=False)
    assert slack_error(lambda: slack.chat_postMessage(**kwargs)).response["error"] == error
    assert sandbox.messages(SUPPORT_CHANNEL) == [] and sandbox.messages("C0QUIET") == []
    assert sandbox.calls("chat.postMessage")[-1].error == error


def test_forty_thousand_characters_and_fifty_blocks_are_fine(slack: WebClient) -> None:
    assert slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x" * 40_000)["ok"]
    assert slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x", blocks=[BUTTON] * 50)["ok"]


def test_ephemeral_messages_are_kept_per_channel_and_user(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    sandbox.add_user("U0OUTSIDER", "carol")
    answer = slack.chat_postEphemeral(channel=SUPPORT_CHANNEL, user=AGENT_ALICE, text="only you")
    assert [m["ts"] for m in sandbox.ephemeral(SUPPORT_CHANNEL, AGENT_ALICE)] == [
        answer["message_ts"]
    ]
    assert sandbox.ephemeral(user=AGENT_BOB) == [] and sandbox.messages(SUPPORT_CHANNEL) == []
    outsider = slack_error(
        lambda: slack.chat_postEphemeral(channel=SUPPORT_CHANNEL, user="U0OUTSIDER", text="x")
    )
    assert outsider.response["error"] == "user_not_in_channel"


# --- people and conversations -------------------------------------------------------------


def test_conversations_open_creates_one_dm_per_user(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    first = slack.conversations_open(users=[AGENT_ALICE])["channel"]["id"]
    again = slack.conversations_open(users=AGENT_ALICE)
    assert first.startswith("D") and again["channel"]["id"] == first and again["already_open"]
    assert set(sandbox.members(first)) == {AGENT_ALICE, BOT_USER_ID}
    slack.chat_postMessage(channel=first, text="hello")
    assert sandbox.messages(first)[0]["text"] == "hello"


def test_conversations_members_paginates_with_cursors(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    people = [f"U0P{n}" for n in range(5)]
    for user_id in people:
        sandbox.add_user(user_id, user_id.lower())
    sandbox.add_channel("C0BIG", "big", members=people)
    # SlackResponse pages in place, so copy each page's members as it comes
    pages = [
        list(page["members"]) for page in slack.conversations_members(channel="C0BIG", limit=2)
    ]
    assert pages == [people[:2], people[2:4], [people[4], BOT_USER_ID]]
    bad = slack_error(lambda: slack.conversations_members(channel="C0BIG", cursor="nonsense"))
    assert bad.response["error"] == "invalid_cursor"


def test_users_and_usergroups(slack: WebClient, sandbox: SlackSandbox) -> None:
    sandbox.add_user("U0GONE", "gone", "gone@sandbox.example", deleted=True)
    assert slack.users_lookupByEmail(email="ALICE@sandbox.example")["user"]["id"] == AGENT_ALICE
    assert slack.usergroups_users_list(usergroup="S0AGENTS")["users"] == [AGENT_ALICE, AGENT_BOB]
    errors = [
        slack_error(lambda: slack.users_info(user="U0NOBODY")),
        slack_error(lambda: slack.users_lookupByEmail(email="gone@sandbox.example")),
        slack_error(lambda: slack.usergroups_users_list(usergroup="S0NONE")),
    ]
    assert [e.response["error"] for e in errors] == [
        "user_not_found",
        "users_not_found",
        "no_such_subteam",
    ]


# --- faults -------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_retry_after_and_posts_once(
    server: RunningServer, sandbox: SlackSandbox
) -> None:
    sandbox.fail("chat.postMessage", status=429, times=1, retry_after=1)
    slack = client_for(server, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    started = time.monotonic()
    answer = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="once")
    assert time.monotonic() - started >= 1.0
    assert answer["ok"]
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["once"]
    assert [c.status for c in sandbox.calls("chat.postMessage")] == [429, 200]


def test_rate_limit_answer_matches_slack(server: RunningServer, sandbox: SlackSandbox) -> None:
    sandbox.fail("*", status=429, retry_after=7)
    refused = slack_error(lambda: client_for(server).auth_test())
    assert refused.response.status_code == 429
    assert refused.response["error"] == "ratelimited"
    assert refused.response.headers["Retry-After"] == "7"


def test_server_error_leaves_state_unchanged(slack: WebClient, sandbox: SlackSandbox) -> None:
    sandbox.fail("chat.postMessage", status=500, times=2)
    for _ in range(2):
        assert (
            slack_error(
                lambda: slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x")
            ).response.status_code
            == 500
        )
    assert sandbox.messages(SUPPORT_CHANNEL) == []
    assert slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="x")["ok"]
    assert [c.status for c in sandbox.calls("chat.postMessage")] == [500, 500, 200]


def test_a_delayed_call_still_posts_when_the_client_gives_up(
    server: RunningServer, sandbox: SlackSandbox
) -> None:
    sandbox.delay("chat.postMessage", seconds=1.0)
    impatient = client_for(server, timeout=0.3)
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel=SUPPORT_CHANNEL, text="slow")
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["slow"]


# --- views --------------------------------------------------------------------------------


def click(sandbox: SlackSandbox, slack: WebClient, user: str = AGENT_ALICE) -> dict[str, Any]:
    ts = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="draft", blocks=[BUTTON])["ts"]
    return sandbox.block_actions(user, SUPPORT_CHANNEL, ts, "approve", "draft_actions", None)


def test_views_open_takes_a_fresh_trigger_once(slack: WebClient, sandbox: SlackSandbox) -> None:
    trigger = click(sandbox, slack)["trigger_id"]
    view = slack.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["root_view_id"] == view["id"]
    assert view["callback_id"] == "edit_draft" and view["state"] == {"values": {}}
    assert (view["app_id"], view["team_id"]) == ("A0SANDBOX", "T0SANDBOX")
    assert [v["id"] for v in sandbox.open_views(AGENT_ALICE)] == [view["id"]]
    reused = slack_error(lambda: slack.views_open(trigger_id=trigger, view=MODAL))
    unknown = slack_error(lambda: slack.views_open(trigger_id="1.2.made-up", view=MODAL))
    assert reused.response["error"] == "exchanged_trigger_id"
    assert unknown.response["error"] == "invalid_trigger_id"


def test_triggers_expire_after_three_seconds(
    slack: WebClient, sandbox: SlackSandbox, clock: Clock
) -> None:
    trigger = click(sandbox, slack)["trigger_id"]
    clock.now += 3.5
    expired = slack_error(lambda: slack.views_open(trigger_id=trigger, view=MODAL))
    assert expired.response["error"] == "expired_trigger_id"
    assert sandbox.open_views(AGENT_ALICE) == []


def test_invalid_views_are_refused(slack: WebClient, sandbox: SlackSandbox) -> None:
    no_submit = MODAL | {"submit": None}
    long_title = MODAL | {"title": {"type": "plain_text", "text": "x" * 25}}
    for view in (HOME, no_submit, long_title, MODAL | {"blocks": [BUTTON] * 101}):
        trigger = click(sandbox, slack)["trigger_id"]
        refused = slack_error(lambda v=view, t=trigger: slack.views_open(trigger_id=t, view=v))
        assert refused.response["error"] == "invalid_arguments"
        assert refused.response["response_metadata"]["messages"]


def test_views_update_checks_the_hash(slack: WebClient, sandbox: SlackSandbox) -> None:
    opened = slack.views_open(trigger_id=click(sandbox, slack)["trigger_id"], view=MODAL)["view"]
    changed = MODAL | {"title": {"type": "plain_text", "text": "Edited"}}
    updated = slack.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert sandbox.view(opened["id"])["title"]["text"] == "Edited"
    stale = slack_error(
        lambda: slack.views_update(view_id=opened["id"], view=MODAL, hash=opened["hash"])
    )
    assert stale.response["error"] == "hash_conflict"
    missing = slack_error(lambda: slack.views_update(view_id="V404", view=MODAL))
    assert missing.response["error"] == "not_found"


def test_views_push_stacks_modals_and_submission_carries_the_view(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    root = slack.views_open(trigger_id=click(sandbox, slack)["trigger_id"], view=MODAL)["view"]
    inner = sandbox.block_actions(AGENT_ALICE, None, None, "body", "reply", "x", view=root["id"])
    pushed = slack.views_push(trigger_id=inner["trigger_id"], view=MODAL)["view"]
    assert (pushed["root_view_id"], pushed["previous_view_id"]) == (root["id"], root["id"])
    values = {"reply": {"body": {"type": "plain_text_input", "value": "Thanks!"}}}
    submitted = sandbox.view_submission(AGENT_ALICE, pushed["id"], values)
    assert submitted["view"]["state"]["values"] == values
    assert submitted["view"]["private_metadata"] == "ticket-42"
    assert submitted["view"]["hash"] == pushed["hash"]
    sandbox.view_closed(AGENT_ALICE, pushed["id"])
    assert [v["id"] for v in sandbox.open_views(AGENT_ALICE)] == [root["id"]]
    closed = sandbox.view_closed(AGENT_ALICE, root["id"])
    assert closed["type"] == "view_closed" and sandbox.open_views(AGENT_ALICE) == []


def test_views_publish_stores_the_home_tab(slack: WebClient, sandbox: SlackSandbox) -> None:
    first = slack.views_publish(user_id=AGENT_ALICE, view=HOME)["view"]
    again = slack.views_publish(user_id=AGENT_ALICE, view=HOME, hash=first["hash"])["view"]
    assert again["id"] == first["id"] and sandbox.home(AGENT_ALICE)["hash"] == again["hash"]
    assert sandbox.home(AGENT_BOB) is None
    modal = slack_error(lambda: slack.views_publish(user_id=AGENT_ALICE, view=MODAL))
    assert modal.response["error"] == "invalid_arguments"
    opened = sandbox.app_home_opened(AGENT_ALICE)["event"]
    assert opened["type"] == "app_home_opened" and opened["view"]["id"] == first["id"]


# --- files --------------------------------------------------------------------------------


def test_files_upload_v2_end_to_end(slack: WebClient, sandbox: SlackSandbox) -> None:
    parent = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="draft")["ts"]
    answer = slack.files_upload_v2(
        channel=SUPPORT_CHANNEL,
        content="ticket export",
        filename="ticket-42.txt",
        title="Ticket 42",
        initial_comment="Here it is",
        thread_ts=parent,
    )
    file_id = answer["file"]["id"]
    assert answer["file"]["title"] == "Ticket 42" and answer["file"]["size"] == 13
    assert sandbox.file_content(file_id) == b"ticket export"
    shared = sandbox.replies(SUPPORT_CHANNEL, parent)[0]
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["draft"]
    assert shared["text"] == "Here it is" and shared["files"][0]["id"] == file_id
    assert [c.method for c in sandbox.calls()][-3:] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]


def test_completing_an_upload_that_never_arrived_fails(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    started = slack.files_getUploadURLExternal(filename="a.txt", length=3)
    refused = slack_error(
        lambda: slack.files_completeUploadExternal(
            files=[{"id": started["file_id"]}], channel_id=SUPPORT_CHANNEL
        )
    )
    assert refused.response["error"] == "file_not_found"
    assert sandbox.files() == [] and sandbox.messages(SUPPORT_CHANNEL) == []


# --- response_url -------------------------------------------------------------------------


def test_response_url_replaces_an_ephemeral_message(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    ts = slack.chat_postEphemeral(
        channel=SUPPORT_CHANNEL, user=AGENT_ALICE, text="draft", blocks=[BUTTON]
    )["message_ts"]
    payload = sandbox.block_actions(
        AGENT_ALICE, SUPPORT_CHANNEL, ts, "approve", "draft_actions", None, is_ephemeral=True
    )
    assert "message" not in payload and payload["container"]["is_ephemeral"]
    hook = WebhookClient(payload["response_url"])
    answer = hook.send(text="Approved", replace_original=True)
    assert answer.status_code == 200 and json.loads(answer.body) == {"ok": True}
    shown = sandbox.ephemeral(SUPPORT_CHANNEL, AGENT_ALICE)
    assert [(m["ts"], m["text"], "blocks" in m) for m in shown] == [(ts, "Approved", False)]
    hook.send(text="Posted for all", response_type="in_channel")
    assert [m["text"] for m in sandbox.messages(SUPPORT_CHANNEL)] == ["Posted for all"]
    hook.send(delete_original=True)
    assert sandbox.ephemeral(SUPPORT_CHANNEL, AGENT_ALICE) == []


def test_response_url_replaces_a_channel_message_whole(
    slack: WebClient, sandbox: SlackSandbox
) -> None:
    ts = slack.chat_postMessage(channel=SUPPORT_CHANNEL, text="draft", blocks=[BUTTON])["ts"]
    payload = sandbox.block_actions(AGENT_BOB, SUPPORT_CHANNEL, ts, "approve", None, None)
    WebhookClient(payload["response_url"]).send(text="Sent by Bob", replace_original=True)
    replaced = sandbox.message(SUPPORT_CHANNEL, ts)
    assert replaced["text"] == "Sent by Bob" and "blocks" not in replaced
    assert [m["text"] for m in sandbox.edit_history(SUPPORT_CHANNEL, ts)] == ["draft"]
    assert sandbox.ephemeral() == []


def test_response_url_is_refused_after_five_uses_or_thirty_minutes(
    sandbox: SlackSandbox, server: RunningServer, clock: Clock
) -> None:
    url = sandbox.new_response_url(SUPPORT_CHANNEL, AGENT_ALICE)
    statuses = [WebhookClient(url).send(text=f"n{n}").status_code for n in range(6)]
    assert statuses == [200] * 5 + [404]
    assert len(sandbox.ephemeral(SUPPORT_CHANNEL, AGENT_ALICE)) == 5
    fresh = sandbox.new_response_url(SUPPORT_CHANNEL, AGENT_ALICE)
    clock.now += 30 * 60 + 1
    assert WebhookClient(fresh).send(text="late").status_code == 404
    assert WebhookClient(f"{server.url}/response/made-up").send(text="x").status_code == 404


# --- payloads and signatures --------------------------------------------------------------


def fixture_keys(name: str) -> set[str]:
    return set(json.loads((PAYLOADS / name).read_text()))


def test_block_actions_has_slacks_shape(slack: WebClient, sandbox: SlackSandbox) -> None:
    payload = click(sandbox, slack)
    assert fixture_keys("test_block_actions__body.json") <= set(payload)
    assert payload["message"]["blocks"][0]["block_id"] == "draft_actions"
    assert payload["container"]["channel_id"] == SUPPORT_CHANNEL
    action = payload["actions"][0]
    assert (action["type"], action["value"], action["text"]["text"]) == (
        "button",
        "ticket-42",
        "Approve",
    )
    assert set(payload["user"]) == {"id", "username", "name", "team_id"}
    with pytest.raises(ElementNotFound):
        sandbox.block_actions(
            AGENT_ALICE, SUPPORT_CHANNEL, payload["container"]["message_ts"], "nope", None, None
        )


def test_view_payloads_have_slacks_shape(slack: WebClient, sandbox: SlackSandbox) -> None:
    view = slack.views_open(trigger_id=click(sandbox, slack)["trigger_id"], view=MODAL)["view"]
    submission = sandbox.view_submission(AGENT_ALICE, view["id"], {})
    fixture = json.loads((PAYLOADS / "test_view_submission__body.json").read_text())
    assert set(fixture) <= set(submission)
    assert set(fixture["view"]) <= set(submission["view"])
    suggestion = sandbox.block_suggestion(AGENT_ALICE, view["id"], "body", "reply", "acme")
    assert fixture_keys("test_block_suggestion__body.json") <= set(suggestion)
    closed = sandbox.view_closed(AGENT_ALICE, view["id"])
    assert fixture_keys("test_view_closed__body.json") - {"response_urls"} <= set(closed)


def test_event_payloads_have_slacks_shape(sandbox: SlackSandbox) -> None:
    message = sandbox.post_as_user(SUPPORT_CHANNEL, AGENT_ALICE, "help?")
    event = sandbox.message_event(SUPPORT_CHANNEL, message)
    fixture = json.loads(
        (PAYLOADS / "test_message_bot__user_message_event_payload.json").read_text()
    )
    assert set(fixture) - {"enterprise_id"} <= set(event)
    assert event["event"]["channel_type"] == "channel" and event["event"]["text"] == "help?"
    assert fixture_keys("test_events_url_verification__event_body.json") == set(
        sandbox.url_verification()
    )


def test_slash_command_fields_match_the_documented_request(sandbox: SlackSandbox) -> None:
    vector = json.loads((FIXTURES / "python-slack-sdk" / "SIGNATURE_TEST_VECTOR.json").read_text())
    documented = [k for k, _ in urllib.parse.parse_qsl(vector["body"], keep_blank_values=True)]
    fields = sandbox.slash_command(AGENT_ALICE, SUPPORT_CHANNEL, "/draft", "42")
    assert set(documented) <= set(fields)
    assert (fields["channel_name"], fields["user_name"], fields["text"]) == (
        "support",
        "alice",
        "42",
    )


def test_signed_headers_reproduce_slacks_documented_vector() -> None:
    vector = json.loads((FIXTURES / "python-slack-sdk" / "SIGNATURE_TEST_VECTOR.json").read_text())
    box = SlackSandbox(signing_secret=vector["signing_secret"])
    timestamp = int(vector["headers"]["X-Slack-Request-Timestamp"])
    headers = box.signed_headers(vector["body"].encode(), timestamp)
    assert headers["X-Slack-Signature"] == vector["headers"]["X-Slack-Signature"]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_signed_headers_verify_with_slack_sdk(sandbox: SlackSandbox) -> None:
    verifier = SignatureVerifier(SIGNING_SECRET)
    event = encode_event(sandbox.url_verification("abc"))
    form = encode_form(sandbox.slash_command(AGENT_ALICE, SUPPORT_CHANNEL, "/draft"))
    for body in (event, form):
        headers = sandbox.signed_headers(body)
        assert verifier.is_valid(
            body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        )
        assert not verifier.is_valid(
            body + b"x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        )
    assert sandbox.signed_headers(event)["Content-Type"] == "application/json"


def test_encode_interactivity_round_trips() -> None:
    payload = {"type": "block_actions", "actions": [{"value": "a&b=c ü"}]}
    fields = urllib.parse.parse_qs(encode_interactivity(payload).decode())
    assert json.loads(fields["payload"][0]) == payload
    assert sandbox_state.content_type_of(encode_interactivity(payload)).endswith("urlencoded")


# --- a real Bolt app between the two ------------------------------------------------------


def bolt_app(slack: WebClient) -> App:
    """A Bolt app like ours: the button opens a modal and answers through response_url."""
    app = App(signing_secret=SIGNING_SECRET, client=slack, process_before_response=True)

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        respond(text="Opening the editor", replace_original=True)

    return app


@pytest.fixture
def app_url(slack: WebClient) -> Iterator[str]:
    handler = SlackRequestHandler(bolt_app(slack))

    async def events(request: Request) -> Any:
        return await handler.handle(request)

    with serve_in_thread(Starlette(routes=[Route("/slack/events", events, methods=["POST"])])) as s:
        yield f"{s.url}/slack/events"


def test_a_bolt_app_accepts_signed_payloads_and_calls_back(
    app_url: str, slack: WebClient, sandbox: SlackSandbox
) -> None:
    ts = slack.chat_postEphemeral(
        channel=SUPPORT_CHANNEL, user=AGENT_ALICE, text="draft", blocks=[BUTTON]
    )["message_ts"]
    payload = sandbox.block_actions(
        AGENT_ALICE, SUPPORT_CHANNEL, ts, "approve", "draft_actions", None, is_ephemeral=True
    )
    answer = sandbox.send(app_url, encode_interactivity(payload))
    assert answer.status_code == 200
    assert [v["callback_id"] for v in sandbox.open_views(AGENT_ALICE)] == ["edit_draft"]
    assert sandbox.ephemeral(SUPPORT_CHANNEL, AGENT_ALICE)[0]["text"] == "Opening the editor"
    forged = SlackSandbox(signing_secret="not-the-apps-secret")
    assert forged.send(app_url, encode_interactivity(payload)).status_code == 401
