"""``POST /slack/events``: refuse what is not Slack's before Bolt sees it, then dispatch.

Bolt verifies the signature too (request verification stays on); checking here first means
a forged or oversized request never gets parsed, and every refusal carries its reason.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aitl.core.request_body import read_within
from bot import actions
from bot.exceptions import (
    BadSignature,
    MalformedPayload,
    PayloadTooLarge,
    RequestRejected,
    UnsupportedContentType,
)
from bot.judge_review_views import AGREE, DISAGREE, ReviewValue
from bot.modals_views import ModalContext

log = logging.getLogger(__name__)
ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
TOLERANCE_S = 300
FORM, JSON = "application/x-www-form-urlencoded", "application/json"
INTERACTIVE = {
    "block_actions",
    "block_suggestion",
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
}
EVENTS = {"url_verification", "event_callback", "app_rate_limited"}
BUTTONS = (
    actions.PREFER_PATTERN,
    actions.ADOPT_PATTERN,
    actions.RELEVANCE_PATTERN,
    actions.SHOW_PATTERN,
)
OUR_MODALS = {actions.ADOPTION_VIEW, actions.MISSING_VIEW}
SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)


class SlackEndpoint:
    def __init__(
        self,
        app: App,
        signing_secret: str,
        *,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))
        self.max_bytes = max_bytes
        self.clock = clock

    async def __call__(self, request: Request) -> Response:
        try:
            body = await self._read(request)
            self._verify(request, body)
            bolt_request = parse_request(
                request.headers.get("content-type", ""),
                body,
                headers=request.headers,
                query=request.query_params,
            )
        except RequestRejected as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status_code)
        try:
            bolt_response = await run_in_threadpool(self.app.dispatch, bolt_request)
        except SHAPE_ERRORS as exc:
            # listeners' failures are answered inside dispatch (a database outage: 500, so
            # Slack retries); a lookup error escaping it is Bolt choking on a payload shape
            # we did not foresee: the request's fault
            log.warning("Bolt could not read a signed payload: %r", exc)
            reason = "the payload does not have the shape Slack sends"
            return JSONResponse({"ok": False, "error": reason}, status_code=400)
        return to_starlette_response(bolt_response)

    async def _read(self, request: Request) -> bytes:
        body = await read_within(request, self.max_bytes)
        if body is None:
            raise PayloadTooLarge(f"the body is over {self.max_bytes} bytes")
        return body

    def _verify(self, request: Request, body: bytes) -> None:
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise BadSignature("missing X-Slack-Request-Timestamp or X-Slack-Signature")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise BadSignature("X-Slack-Request-Timestamp is not a Unix time")
        if abs(self.clock() - int(timestamp)) > TOLERANCE_S:
            raise BadSignature("the request timestamp is more than 5 minutes away from now")
        try:
            valid = self.verifier.is_valid(body, timestamp, signature)
        except UnicodeDecodeError:  # slack_sdk decodes the body first; Slack sends UTF-8
            raise BadSignature("the body is not UTF-8, so Slack did not sign it") from None
        except TypeError:  # compare_digest refuses a signature that is not ASCII
            valid = False
        if not valid:
            raise BadSignature("the signature does not match our signing secret")


class _Clock:
    """slack_sdk's verifier asks a Clock object for the time."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now


def parse_request(
    content_type: str, body: bytes, *, headers: Any = None, query: Any = None
) -> BoltRequest:
    """The body parsed once, by Bolt, then checked; RequestRejected names what is wrong."""
    media = content_type.split(";")[0].strip().lower()
    if media not in (FORM, JSON):
        raise UnsupportedContentType(f"Slack does not send {media or 'bodies without a type'}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload("the body is not UTF-8") from exc
    try:
        request = BoltRequest(
            body=text, headers=headers or {"content-type": content_type}, query=query
        )
    except (ValueError, RecursionError) as exc:
        raise MalformedPayload("the body is not valid JSON") from exc
    except (AttributeError, TypeError) as exc:  # valid JSON, but not an object Bolt can read
        raise MalformedPayload("the body is not a JSON object") from exc
    except Exception as exc:  # Bolt trusts the shape while building its context
        raise MalformedPayload("the payload does not have the shape Slack sends") from exc
    check_payload(media, request.body)
    return request


def check_payload(media: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise MalformedPayload("the body is not a JSON object")
    if media == JSON or _kind(payload) in EVENTS:
        _check_event(payload)
    elif "type" in payload:
        _check_interactive(payload)
    elif "command" in payload:
        command = payload.get("command")
        if not _is_id(payload.get("user_id")) or not isinstance(command, str) or command[:1] != "/":
            raise MalformedPayload("a slash command needs a command and a user_id")
    elif "ssl_check" not in payload:
        raise MalformedPayload("the form has no payload, command or ssl_check")


def _is_id(value: Any) -> bool:
    """Slack ids (U…, W…, B…) are short ASCII words."""
    return isinstance(value, str) and ID.fullmatch(value) is not None


def _kind(payload: dict[str, Any]) -> str | None:
    """The payload's type, when it is text (a list there is not hashable)."""
    kind = payload.get("type")
    return kind if isinstance(kind, str) else None


def _check_interactive(payload: Any) -> None:
    if not isinstance(payload, dict) or _kind(payload) not in INTERACTIVE:
        raise MalformedPayload("payload.type is not a Slack interaction type")
    user = payload.get("user")
    if not isinstance(user, dict) or not _is_id(user.get("id")):
        raise MalformedPayload("payload.user.id is missing or not a Slack id")
    kind = payload["type"]
    if kind == "block_actions":
        acts = payload.get("actions")
        if not isinstance(acts, list) or not acts:
            raise MalformedPayload("block_actions needs a non-empty actions list")
        for action in acts:
            if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
                raise MalformedPayload("every action needs an action_id")
            if not isinstance(action.get("value", ""), str):
                raise MalformedPayload("an action's value must be a string")
            _check_our_button(action)
    if kind in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id", ""), str):
            raise MalformedPayload(f"{kind} needs a view")
        if not isinstance(view.get("type"), str):  # Bolt's own middleware reads view.type
            raise MalformedPayload(f"{kind} needs a view with a type")
        state = view.get("state", {})
        if not isinstance(state, dict) or not isinstance(state.get("values", {}), dict):
            raise MalformedPayload("view.state.values must be an object")
        if kind == "view_submission" and view.get("callback_id") in OUR_MODALS:
            _check_modal_context(view.get("private_metadata"))
    if kind == "block_suggestion" and not isinstance(payload.get("action_id"), str):
        raise MalformedPayload("block_suggestion needs an action_id")


def _check_our_button(action: dict[str, Any]) -> None:
    """Our buttons carry a draft set (and for relevance a chunk) in their value; a value we
    did not write is refused here rather than failing inside the listener."""
    action_id = action["action_id"]
    if action_id in (AGREE, DISAGREE):  # App Home's review of the judge: a run and an event
        ReviewValue.decode(action.get("value"))
        return
    if not any(p.match(action_id) for p in BUTTONS) and action_id != actions.MISSING:
        return
    button = actions.ButtonValue.decode(action.get("value"))
    if actions.RELEVANCE_PATTERN.match(action_id):
        button.chunk_id  # noqa: B018 (raises MalformedPayload)


def _check_modal_context(metadata: Any) -> None:
    if not isinstance(metadata, str):
        raise MalformedPayload("the modal's private_metadata is not ours")
    context = ModalContext.decode(metadata)
    fields = (context.value, context.clicked_at, context.ticket)
    if (
        type(context.draft_set_id) is not int
        or not 0 < context.draft_set_id < 2**63
        or not all(isinstance(f, str) for f in fields)
        or not isinstance(context.label, str | None)
        or not isinstance(context.response_url, str | None)
    ):
        raise MalformedPayload("the modal's private_metadata is not ours")


def _check_event(payload: Any) -> None:
    if not isinstance(payload, dict) or _kind(payload) not in EVENTS:
        raise MalformedPayload("type is not a Slack Events API type")
    if payload["type"] == "event_callback":
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise MalformedPayload("event_callback needs an event with a type")
        if "user" in event and not isinstance(event["user"], str | dict):
            raise MalformedPayload("event.user must be a Slack id")
    if payload["type"] == "url_verification" and not isinstance(payload.get("challenge"), str):
        raise MalformedPayload("url_verification needs a challenge")
