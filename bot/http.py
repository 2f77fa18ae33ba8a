"""``POST /slack/events``: refuse what is not Slack's before Bolt sees it, then dispatch.

Bolt verifies the signature too (request verification stays on); checking here first means
a forged or oversized request never gets parsed, and every refusal carries its reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.exceptions import (
    BadSignature,
    MalformedPayload,
    PayloadTooLarge,
    RequestRejected,
    UnsupportedContentType,
)

TOLERANCE_S = 300
FORM = "application/x-www-form-urlencoded"
INTERACTIVE = {
    "block_actions",
    "block_suggestion",
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
}
EVENTS = {"url_verification", "event_callback", "app_rate_limited"}


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
            check_payload(request.headers.get("content-type", ""), body)
        except RequestRejected as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status_code)
        bolt_response = await run_in_threadpool(self.app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def _read(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise PayloadTooLarge(f"the body is over {self.max_bytes} bytes")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > self.max_bytes:
                raise PayloadTooLarge(f"the body is over {self.max_bytes} bytes")
        return bytes(body)

    def _verify(self, request: Request, body: bytes) -> None:
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise BadSignature("missing X-Slack-Request-Timestamp or X-Slack-Signature")
        if not timestamp.isdigit():
            raise BadSignature("X-Slack-Request-Timestamp is not a Unix time")
        if abs(self.clock() - int(timestamp)) > TOLERANCE_S:
            raise BadSignature("the request timestamp is more than 5 minutes away from now")
        if not self.verifier.is_valid(body, timestamp, signature):
            raise BadSignature("the signature does not match our signing secret")


class _Clock:
    """slack_sdk's verifier asks a Clock object for the time."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now


def check_payload(content_type: str, body: bytes) -> None:
    """Raise a RequestRejected naming what is wrong with a signed body."""
    media = content_type.split(";")[0].strip().lower()
    text = _decode(body)
    if media == FORM:
        _check_form(text)
    elif media == "application/json":
        _check_event(_json(text))
    else:
        raise UnsupportedContentType(f"Slack does not send {media or 'bodies without a type'}")


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload("the body is not UTF-8") from exc


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedPayload("the body is not valid JSON") from exc


def _check_form(text: str) -> None:
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200)
    except ValueError as exc:
        raise MalformedPayload("the form body cannot be parsed") from exc
    if "payload" in form:
        _check_interactive(_json(form["payload"][0]))
    elif "command" in form:
        if not form.get("user_id", [""])[0] or not form["command"][0].startswith("/"):
            raise MalformedPayload("a slash command needs a command and a user_id")
    elif "ssl_check" not in form:
        raise MalformedPayload("the form has no payload, command or ssl_check")


def _check_interactive(payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("type") not in INTERACTIVE:
        raise MalformedPayload("payload.type is not a Slack interaction type")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise MalformedPayload("payload.user.id is missing")
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
    if kind in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id", ""), str):
            raise MalformedPayload(f"{kind} needs a view")
        state = view.get("state", {})
        if not isinstance(state, dict) or not isinstance(state.get("values", {}), dict):
            raise MalformedPayload("view.state.values must be an object")
    if kind == "block_suggestion" and not isinstance(payload.get("action_id"), str):
        raise MalformedPayload("block_suggestion needs an action_id")


def _check_event(payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("type") not in EVENTS:
        raise MalformedPayload("type is not a Slack Events API type")
    if payload["type"] == "event_callback":
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise MalformedPayload("event_callback needs an event with a type")
    if payload["type"] == "url_verification" and not isinstance(payload.get("challenge"), str):
        raise MalformedPayload("url_verification needs a challenge")
