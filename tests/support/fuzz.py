"""Hypothesis strategies for hostile input: valid Slack and Zendesk payloads with a few fields
broken, hostile strings and JSON, and the checks every answer must pass.

Most generated requests are validly signed on purpose: a forged one stops at the signature
check, and the parsers behind it would never be exercised.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from bot import actions
from bot.modals_views import ModalContext
from sandboxes.slack.state import AGENT_ALICE, SUPPORT_CHANNEL

# reproducible in CI; one database per test function, shared by its examples on purpose
FUZZ = settings(
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a real request
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

UNKNOWN_USER, OUTSIDER = "U0NOBODY", "U0OUTSIDER"
FORM = "application/x-www-form-urlencoded"
SANDBOX_KINDS = [
    "block_actions",
    "view_submission",
    "view_closed",
    "close_view",
    "block_suggestion",
    "app_home_opened",
]
UNKNOWN_SET = "987654"  # no draft set has this id in a fresh database

EDGE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: valid as a JSON escape, not encodable as UTF-8
    "\udfff\ud800",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e",
    "e\u0301\u0301\u0301",  # combining marks
    "\ufeff",
    "𝕏" * 300,
    "A" * 5_000,
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes
    "²",  # superscript two: isdigit() yes, int() no
    "99999999999999999999999",
    "9223372036854775808",
    "-1",
    "0",
    "1e309",
    "NaN",
    "null",
    "<script>alert(1)</script>",
    "'; DROP TABLE feedback_events; --",
    "%00%ff",
    "12:",
    ":7",
    "12:x",
    f"{UNKNOWN_SET}:²",
    "zen:ticket:",
    "zen:ticket:-5",
]

hostile_text = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    st.text(max_size=30),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(hostile_text, inner, max_size=3),
    ),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path in a JSON document, containers included."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


def _set(doc: Any, path: tuple, value: Any, *, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any], max_changes: int = 3) -> Any:
    """``template`` with up to ``max_changes`` fields replaced, deleted or added."""
    doc = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, max_changes))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "delete" and path:
            doc = _set(doc, path, None, delete=True)
        elif op == "add":
            target = doc
            for key in path:
                target = target[key]
            if isinstance(target, dict):
                target[draw(hostile_text)] = draw(json_values)
            else:
                doc = _set(doc, path, draw(json_values), delete=False)
        else:
            doc = _set(doc, path, draw(json_values), delete=False)
    return doc


# --- Slack ----------------------------------------------------------------------------------

SLACK_USERS = [AGENT_ALICE, OUTSIDER, UNKNOWN_USER]
# a closed port: slack_sdk retries a refused connection for about a second, so tests that
# send many requests pass the sandbox's response_url instead (it answers 404 at once)
NOWHERE = "http://127.0.0.1:9/hooks/nowhere"
BUTTONS = [
    ("aitl.prefer.A", UNKNOWN_SET),
    ("aitl.prefer.both_bad", UNKNOWN_SET),
    (actions.RELEVANT, f"{UNKNOWN_SET}:5"),
    (actions.NOT_RELEVANT, f"{UNKNOWN_SET}:6"),
    ("aitl.show_full.B", f"{UNKNOWN_SET}:B"),
    ("aitl.adopt.as_is.A", UNKNOWN_SET),
    ("aitl.adopt.not_used", UNKNOWN_SET),
    (actions.MISSING, UNKNOWN_SET),
    (actions.HOME_REFRESH, ""),
    ("aitl.digest.open", "1"),
    ("aitl.admin.promote", "retriever"),
    ("aitl.unknown.button", "x"),
]


def _envelope(kind: str, user: str) -> dict[str, Any]:
    return {
        "type": kind,
        "user": {"id": user, "username": "u", "team_id": "T0SANDBOX"},
        "api_app_id": "A0AITL",
        "token": "sandbox-verification-token",
        "team": {"id": "T0SANDBOX", "domain": "aitl-sandbox"},
        "enterprise": None,
        "is_enterprise_install": False,
    }


def block_actions(
    user: str, action_id: str, value: str, response_url: str = NOWHERE
) -> dict[str, Any]:
    action = {
        "type": "button",
        "action_id": action_id,
        "block_id": "aitl.card",
        "value": value,
        "action_ts": "1763769601.000200",
    }
    return _envelope("block_actions", user) | {
        "container": {"type": "message", "message_ts": "1763769600.000100", "channel_id": "C0X"},
        "channel": {"id": SUPPORT_CHANNEL, "name": "support"},
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "state": {"values": {}},
        "actions": [action],
    }


def _metadata(value: str = "as_is") -> str:
    context = ModalContext(draft_set_id=int(UNKNOWN_SET), value=value, label="A")
    return context.encode()


def view_submission(user: str, callback_id: str, values: dict[str, Any]) -> dict[str, Any]:
    view = {
        "id": "V0FUZZ",
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": _metadata(),
        "state": {"values": values},
        "hash": "1.2",
    }
    return _envelope("view_submission", user) | {"view": view, "response_urls": []}


ADOPTION_VALUES = {
    actions.REASON: {
        actions.REASON: {"type": "static_select", "selected_option": {"value": "accurate"}}
    },
    actions.DETAILS: {actions.DETAILS: {"type": "plain_text_input", "value": "call me"}},
    actions.POST: {actions.POST: {"type": "checkboxes", "selected_options": [{"value": "post"}]}},
}
MISSING_VALUES = {
    actions.ARTICLE: {
        actions.ARTICLE: {"type": "external_select", "selected_option": {"value": "chunk:3"}}
    },
    actions.URL: {actions.URL: {"type": "url_text_input", "value": "https://example.com/a"}},
    actions.NOTE: {actions.NOTE: {"type": "plain_text_input", "value": "the reset guide"}},
}
PEOPLE_VALUES = {
    actions.AGENTS_GROUP: {"g": {"type": "plain_text_input", "value": "S0AGENTS"}},
    actions.MANAGERS: {"m": {"type": "multi_users_select", "selected_users": ["U0ALICE"]}},
}


def slack_templates(user: str, response_url: str = NOWHERE) -> list[tuple[str, dict[str, Any]]]:
    """(how it is sent, payload): 'interactive' goes in a form's payload field."""
    found: list[tuple[str, dict[str, Any]]] = [
        ("interactive", block_actions(user, action_id, value, response_url))
        for action_id, value in BUTTONS
    ]
    found += [
        ("interactive", view_submission(user, actions.ADOPTION_VIEW, ADOPTION_VALUES)),
        ("interactive", view_submission(user, actions.MISSING_VIEW, MISSING_VALUES)),
        ("interactive", view_submission(user, actions.ADMIN_PEOPLE, PEOPLE_VALUES)),
        ("interactive", view_submission(user, "aitl.not_ours", {})),
        (
            "interactive",
            _envelope("view_closed", user)
            | {"view": {"id": "V0", "callback_id": actions.ADOPTION_VIEW}, "is_cleared": False},
        ),
        (
            "interactive",
            _envelope("block_suggestion", user)
            | {"action_id": actions.KB_SEARCH, "block_id": actions.ARTICLE, "value": "x"},
        ),
        (
            "interactive",
            _envelope("shortcut", user) | {"callback_id": "aitl.ask", "trigger_id": "1"},
        ),
        (
            "interactive",
            _envelope("message_action", user)
            | {"callback_id": "aitl.ask", "message": {"ts": "1.2", "text": "hi"}},
        ),
        ("command", {"command": "/aitl", "text": "help", "user_id": user, "team_id": "T0"}),
        ("command", {"command": "/aitl", "text": "", "user_id": user, "channel_id": "C0X"}),
        ("events", {"type": "url_verification", "challenge": "abc", "token": "t"}),
        (
            "events",
            {
                "type": "event_callback",
                "team_id": "T0SANDBOX",
                "api_app_id": "A0AITL",
                "event_id": "Ev0FUZZ",
                "event_time": 1763769600,
                "event": {"type": "app_home_opened", "user": user, "tab": "messages"},
            },
        ),
        (
            "events",
            {
                "type": "event_callback",
                "team_id": "T0SANDBOX",
                "event_id": "Ev0MSG",
                "event": {"type": "message", "user": user, "text": "hi", "channel": "C0X"},
            },
        ),
        ("form", {"ssl_check": "1", "token": "t"}),
    ]
    return found


def encode_slack(how: str, payload: Any) -> tuple[bytes, str]:
    """The body and content type Slack would use for this kind of payload."""
    if how == "interactive":
        text = json.dumps(payload, separators=(",", ":"))
        return urllib.parse.urlencode(
            {"payload": text}
        ).encode(), "application/x-www-form-urlencoded"
    if how == "events":
        return json.dumps(payload).encode(), "application/json"
    fields = payload if isinstance(payload, dict) else {"payload": payload}
    pairs = [(str(k), json.dumps(v) if not isinstance(v, str) else v) for k, v in fields.items()]
    encoded = urllib.parse.urlencode(pairs, errors="surrogatepass")
    return encoded.encode(), "application/x-www-form-urlencoded"


@st.composite
def slack_requests(draw: st.DrawFn, response_url: str = NOWHERE) -> tuple[bytes, str]:
    """A payload of every type Slack sends, a few fields broken; occasionally raw bytes."""
    user = draw(st.sampled_from(SLACK_USERS))
    how, template = draw(st.sampled_from(slack_templates(user, response_url)))
    if draw(st.integers(0, 19)) == 0:  # a body that is not a payload at all
        raw = draw(st.one_of(st.binary(max_size=200), hostile_text.map(_utf8)))
        return raw, "application/x-www-form-urlencoded" if how != "events" else "application/json"
    return encode_slack(how, draw(mutated(template)))


# --- Zendesk --------------------------------------------------------------------------------


def zendesk_envelope(kind: str = "ticket.created", ticket_id: int = 42) -> dict[str, Any]:
    return {
        "type": f"zen:event-type:{kind}",
        "account_id": 1,
        "id": str(uuid.UUID(int=ticket_id)),
        "subject": f"zen:ticket:{ticket_id}",
        "time": "2026-11-21T23:00:00Z",
        "zendesk_event_version": "2022-11-06",
        "detail": {"id": str(ticket_id), "subject": "Help", "status": "NEW"},
        "event": {},
    }


ZENDESK_TEMPLATES = [
    zendesk_envelope(),
    zendesk_envelope("ticket.comment_added", 7),
    zendesk_envelope("ticket.status_changed", 8),
    zendesk_envelope("ticket.priority_changed", 9),
    {
        "aitl": 1,
        "ticket_id": "77",
        "updated_at": "2026-11-21 23:01:02 UTC",
        "event": "ticket.updated",
    },
]


@st.composite
def zendesk_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(st.binary(max_size=200), hostile_text.map(_utf8)))
    doc = draw(mutated(draw(st.sampled_from(ZENDESK_TEMPLATES))))
    return json.dumps(doc).encode()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def deep_json(depth: int) -> bytes:
    """Nested objects and lists, deeper than any parser limit we set."""
    return b'{"a":[' * depth + b"1" + b"]}" * depth


def slack_signature(secret: str, body: bytes, timestamp: int) -> str:
    """Slack's v0 signature over raw bytes (the sandbox's signer wants UTF-8 text)."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def run(check: Any, examples: int) -> int:
    """Run a @given test with FUZZ settings and ``examples`` inputs; assert that many were
    really generated (the suite's 10,000 is a sum of these) and print the count."""
    calls: list[int] = []
    inner = check.hypothesis.inner_test

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        inner(*args, **kwargs)

    check.hypothesis.inner_test = counted
    settings(FUZZ, max_examples=examples)(check)()
    assert len(calls) >= examples, f"only {len(calls)} of {examples} inputs were generated"
    print(f"{inner.__name__}: {len(calls)} generated inputs")
    return len(calls)


# --- the properties -------------------------------------------------------------------------


def assert_refusal_is_clear(response: Any) -> None:
    """Never a 5xx; a 4xx names its reason in words."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        reason = body.get("reason") or body.get("error")
        assert isinstance(reason, str) and len(reason) >= 8, body
