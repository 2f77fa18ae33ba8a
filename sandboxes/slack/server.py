"""A local Slack: the Web API methods the bot uses, answered as Slack answers them, plus
file upload URLs, response_urls, signed requests to an app, and a page to click in
(``/``, see :mod:`sandboxes.slack.page`).

Point ``slack_sdk.WebClient(base_url=f"{server.url}/api/")`` at :func:`create_app`'s app.
State and the payload builders live in :class:`sandboxes.slack.state.SlackState`; this module
adds the HTTP side: parameter parsing (query, form and JSON bodies, merged), bearer-token
auth, injected faults, the call log, and :meth:`SlackSandbox.send` towards an app.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aitl.core.servers import RunningServer, serve_in_thread
from sandboxes import faults
from sandboxes.slack import page as sandbox_page
from sandboxes.slack.state import (
    Fault,
    Json,
    MethodError,
    RecordedCall,
    ResponseUrlRejected,
    SlackState,
    UploadNotFound,
    decode_json_params,
    flag,
)

__all__ = ["RecordedCall", "SlackSandbox", "create_app", "serve"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FAULT_ERRORS = {
    429: "ratelimited",
    500: "internal_error",
    502: "internal_error",
    503: "service_unavailable",
    504: "request_timeout",
}


class Answer(NamedTuple):
    """A Web API answer not yet sent, so a fault after the call can still replace it."""

    body: Json
    status: int = 200
    headers: dict[str, str] | None = None


class SlackSandbox(SlackState):
    """The sandbox's workspace state, able to post signed requests to an app."""

    #: Where the page's clicks go: the app's ``/slack/events`` (None: the page says so).
    app_url: str | None = None
    #: Slack shows an error when the app has not answered within 3 s; so does the page.
    ack_timeout_s: float = 3.0

    def send(
        self,
        app_url: str,
        body: bytes,
        content_type: str | None = None,
        *,
        timestamp: int | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST ``body`` to the app (e.g. ``.../slack/events``) signed as Slack signs it."""
        headers = self.signed_headers(body, timestamp)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return httpx.post(app_url, content=body, headers=headers, timeout=timeout)


def serve(sandbox: SlackSandbox, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``sandbox`` and point its response_urls at the server."""
    server = serve_in_thread(create_app(sandbox), host, port)
    sandbox.base_url = server.url
    return server


def create_app(sandbox: SlackSandbox) -> Starlette:
    """The ASGI app: ``/api/<method>``, upload URLs, response_urls and the page."""
    app = Starlette(
        routes=[
            Route("/api/{method}", web_api, methods=["GET", "POST"]),
            Route("/upload/v1/{file_id}", upload, methods=["POST"]),
            Route("/response/{url_id}", response_url, methods=["POST"]),
            *sandbox_page.routes(),
        ]
    )
    app.state.sandbox = sandbox
    return app


def _sandbox(request: Request) -> SlackSandbox:
    return request.app.state.sandbox


# --- the Web API: plumbing ----------------------------------------------------------------


async def web_api(request: Request) -> Response:
    """One Web API call: auth, faults, the method, and the call log."""
    sandbox, method = _sandbox(request), request.path_params["method"]
    try:
        params = await _params(request)
    except MethodError as exc:
        return _answer(sandbox, method, {}, exc.body())
    token = _bearer(request) or params.pop("token", None)
    params.pop("token", None)
    refused = sandbox.authenticate(token)
    if refused is not None:
        return _answer(sandbox, method, params, {"ok": False, "error": refused})
    fault = sandbox.take_fault(method)
    call = functools.partial(_call, sandbox, request, method, params)
    answer = await faults.around(fault, call, _fault_answer)
    return _answer(sandbox, method, params, *answer)


async def _call(sandbox: SlackSandbox, request: Request, method: str, params: Json) -> Answer:
    """The method's own answer, not yet recorded: a fault after it may replace it."""
    handler = METHODS.get(method)
    if handler is None:
        return Answer({"ok": False, "error": "unknown_method"})
    try:
        return Answer({"ok": True} | handler(sandbox, params, request))
    except MethodError as exc:
        return Answer(exc.body())


async def _params(request: Request) -> Json:
    """Query, form and JSON body parameters, merged; JSON-string blocks/views decoded."""
    params: Json = dict(request.query_params)
    body = await request.body()
    if body and request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise MethodError("invalid_json") from exc
        if not isinstance(data, dict):
            raise MethodError("invalid_json")
        params |= data
    elif body:
        params |= dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    return decode_json_params(params)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _answer(
    sandbox: SlackSandbox,
    method: str,
    params: Json,
    body: Json,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """HTTP 200 whatever the outcome, as Slack answers; the error is in the body. Only an
    injected fault answers another status."""
    error = None if body.get("ok") else body.get("error")
    sandbox.record(RecordedCall(method, params, status, sandbox.now(), error))
    return JSONResponse(body, status, headers)


def _fault_answer(fault: Fault) -> Answer:
    status = fault.status or 500
    error = FAULT_ERRORS.get(status, "internal_error")
    headers = {}
    if status == 429 and fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    return Answer({"ok": False, "error": error}, status, headers)


def _text(params: Json, name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def _optional(params: Json, name: str) -> str | None:
    value = params.get(name)
    return None if value in (None, "") else str(value)


def _int(params: Json, name: str, default: int) -> int:
    try:
        return int(params.get(name) or default)
    except (TypeError, ValueError) as exc:
        raise MethodError("invalid_arguments", [f"[ERROR] {name} must be a number"]) from exc


def _csv(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


# --- the Web API: methods -----------------------------------------------------------------

Handler = Callable[[SlackSandbox, Json, Request], Json]


def auth_test(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    user = sandbox.user(sandbox.bot_user_id)
    body = {"url": f"https://{sandbox.team_domain}.slack.com/", "team": sandbox.team_name}
    body |= {"user": user["name"], "team_id": sandbox.team_id}
    body |= {"user_id": sandbox.bot_user_id, "bot_id": sandbox.bot_id}
    return body | {"is_enterprise_install": False}


def chat_post_message(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    channel, message = sandbox.post_message(
        _text(params, "channel"),
        text=params.get("text"),
        blocks=params.get("blocks"),
        thread_ts=_optional(params, "thread_ts"),
        metadata=params.get("metadata"),
        attachments=params.get("attachments"),
        reply_broadcast=flag(params.get("reply_broadcast")),
    )
    return {"channel": channel, "ts": message["ts"], "message": message}


def chat_update(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    channel, message = sandbox.update_message(
        _text(params, "channel"),
        _text(params, "ts"),
        text=params.get("text"),
        blocks=params.get("blocks"),
        attachments=params.get("attachments"),
    )
    body = {"channel": channel, "ts": message["ts"], "text": message["text"]}
    return body | {"message": message}


def chat_post_ephemeral(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    message_ts = sandbox.post_ephemeral(
        _text(params, "channel"),
        _text(params, "user"),
        text=params.get("text"),
        blocks=params.get("blocks"),
        thread_ts=_optional(params, "thread_ts"),
        attachments=params.get("attachments"),
    )
    return {"message_ts": message_ts}


def conversations_open(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    channel, already_open = sandbox.open_conversation(_csv(params.get("users")))
    body: Json = {"channel": {"id": channel}}
    return body | ({"no_op": True, "already_open": True} if already_open else {})


def conversations_members(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    """Cursor-paginated; the cursor is an opaque offset, ``""`` on the last page."""
    members = sandbox.members(_text(params, "channel"))
    limit = min(max(_int(params, "limit", DEFAULT_LIMIT), 1), MAX_LIMIT)
    start = _decode_cursor(_text(params, "cursor"))
    end = start + limit
    next_cursor = _encode_cursor(end) if end < len(members) else ""
    return {"members": members[start:end], "response_metadata": {"next_cursor": next_cursor}}


def _encode_cursor(offset: int) -> str:
    return urllib.parse.quote(json.dumps({"offset": offset}).encode().hex())


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(bytes.fromhex(cursor))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MethodError("invalid_cursor") from exc
    if not isinstance(offset, int) or offset < 0:
        raise MethodError("invalid_cursor")
    return offset


def conversations_history(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    """Newest first, thread replies left out; metadata only with ``include_all_metadata``."""
    found = sandbox.messages(_text(params, "channel"))
    found = sorted(found, key=lambda m: float(m["ts"]), reverse=True)
    return _message_page(found, params)


def conversations_replies(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    """The thread's parent, then its replies, oldest first."""
    channel, ts = _text(params, "channel"), _text(params, "ts")
    found = [sandbox.message(channel, ts), *sandbox.replies(channel, ts)]
    return _message_page(found, params)


def _message_page(found: list[Json], params: Json) -> Json:
    oldest, latest = params.get("oldest"), params.get("latest")
    if oldest not in (None, ""):
        found = [m for m in found if float(m["ts"]) >= float(oldest)]
    if latest not in (None, ""):
        found = [m for m in found if float(m["ts"]) <= float(latest)]
    if not flag(params.get("include_all_metadata")):
        found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
    limit = min(max(_int(params, "limit", DEFAULT_LIMIT), 1), MAX_LIMIT)
    return {"messages": found[:limit], "has_more": len(found) > limit}


def users_info(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    return {"user": sandbox.user(_text(params, "user"))}


def users_lookup_by_email(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    return {"user": sandbox.user_by_email(_text(params, "email"))}


def usergroups_users_list(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    return {"users": sandbox.usergroup_users(_text(params, "usergroup"))}


def views_open(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    return {"view": sandbox.open_view(_text(params, "trigger_id"), params.get("view"))}


def views_push(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    return {"view": sandbox.push_view(_text(params, "trigger_id"), params.get("view"))}


def views_update(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    view = sandbox.update_view(
        params.get("view"),
        view_id=_optional(params, "view_id"),
        external_id=_optional(params, "external_id"),
        hash=_optional(params, "hash"),
    )
    return {"view": view}


def views_publish(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    view = sandbox.publish_home(
        _text(params, "user_id"), params.get("view"), hash=_optional(params, "hash")
    )
    return {"view": view}


def files_get_upload_url(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    """The upload URL points back at this server, at the host the client used."""
    file_id = sandbox.begin_upload(
        _text(params, "filename"), params.get("length"), _optional(params, "alt_txt")
    )
    base = str(request.base_url).rstrip("/")
    return {"upload_url": f"{base}/upload/v1/{file_id}", "file_id": file_id}


def files_complete_upload(sandbox: SlackSandbox, params: Json, request: Request) -> Json:
    channels = _csv(params.get("channels")) or _csv(params.get("channel_id"))
    files = sandbox.complete_upload(
        params.get("files"),
        channels,
        initial_comment=_optional(params, "initial_comment"),
        thread_ts=_optional(params, "thread_ts"),
    )
    return {"files": files}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "conversations.open": conversations_open,
    "conversations.members": conversations_members,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.users.list": usergroups_users_list,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "views.publish": views_publish,
    "files.getUploadURLExternal": files_get_upload_url,
    "files.completeUploadExternal": files_complete_upload,
}


# --- uploads and response_urls ------------------------------------------------------------


async def upload(request: Request) -> Response:
    """The upload URL: the raw bytes of the file, answered ``OK - <length>`` as Slack does."""
    sandbox, file_id = _sandbox(request), request.path_params["file_id"]
    data = await request.body()
    params = {"file_id": file_id, "length": len(data)}
    try:
        sandbox.receive_upload(file_id, data)
    except UploadNotFound as exc:
        sandbox.record(RecordedCall("upload", params, 404, sandbox.now(), str(exc)))
        return PlainTextResponse("not found", 404)
    sandbox.record(RecordedCall("upload", params, 200, sandbox.now()))
    return PlainTextResponse(f"OK - {len(data)}")


async def response_url(request: Request) -> Response:
    """A response_url: JSON in, ``{"ok": true}`` out; 404 once unknown, expired or used 5x."""
    sandbox = _sandbox(request)
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    status, answer = _respond(sandbox, request.path_params["url_id"], body)
    params = body if isinstance(body, dict) else {}
    recorded = RecordedCall("response_url", params, status, sandbox.now(), answer.get("error"))
    sandbox.record(recorded)
    return JSONResponse(answer, status)


def _respond(sandbox: SlackSandbox, url_id: str, body: Any) -> tuple[int, Json]:
    if not isinstance(body, dict):
        return 400, {"ok": False, "error": "invalid_payload"}
    try:
        sandbox.respond(url_id, decode_json_params(body))
    except ResponseUrlRejected as exc:
        return 404, {"ok": False, "error": str(exc)}
    except MethodError as exc:
        return 400, exc.body()
    return 200, {"ok": True}
