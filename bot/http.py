"""``POST /slack/events``: refuse what is not Slack's before Bolt sees it, then dispatch.

Bolt verifies the signature too (request verification stays on); checking here first means
a forged or oversized request never gets parsed, and every refusal carries its reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
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
        bolt_response = await run_in_threadpool(self.app.dispatch, bolt_request)
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
    check_payload(media, request.body)
    return request


def check_payload(media: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise MalformedPayload("the body is not a JSON object")
    if media == JSON or payload.get("type") in EVENTS:
        _check_event(payload)
    elif "type" in payload:
        _check_interactive(payload)
    elif "command" in payload:
        command = payload.get("command")
        if not payload.get("user_id") or not isinstance(command, str) or command[:1] != "/":
            raise MalformedPayload("a slash command needs a command and a user_id")
    elif "ssl_check" not in payload:
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
