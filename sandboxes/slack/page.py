"""The Slack sandbox's page: a person uses the local Slack as in the Slack client.

The page (``sandboxes/slack/static``) polls what it draws and posts what the person does; this
module turns each act into the payload Slack would send, signs it, posts it to the app's
``/slack/events`` (:attr:`sandboxes.slack.server.SlackSandbox.app_url`), and applies Slack's side of
the app's answer (a view_submission's ``response_action``, a block_suggestion's options).

Routes:

- ``GET /``, ``GET /sandbox/slack``: the page; ``GET /sandbox/static/{path}``: its files.
- ``GET /sandbox/state?user=U&since=N``: :meth:`SlackState.snapshot` plus ``changed`` and
  ``app_url``; only ``{"version": N, "changed": false}`` when ``since`` is the version.
- ``POST /sandbox/act``: ``{"status": <the app's HTTP status>}``, with ``errors`` (a
  view_submission's), ``options`` or ``option_groups`` (a block_suggestion's), ``error``.
- ``GET /sandbox/files/{id}``: an uploaded file's bytes, with its mimetype.

Act kinds (JSON, all with ``user`` and ``kind``): ``block_actions`` (``channel`` + ``ts``,
or ``view_id``; ``action_id``, ``block_id``, ``value`` or ``selected_option``, ``values``),
``view_submission`` (``view_id``, ``values`` as Slack's ``state.values``), ``view_closed``
and ``close_view`` (``view_id``; the second closes it here without telling the app, as
Slack does when ``notify_on_close`` is off), ``block_suggestion`` (``view_id`` or
``channel`` + ``ts``; ``action_id``, ``block_id``, ``value``: the query), and
``app_home_opened``. Refusals carry a readable ``error``: 400 a malformed act, 404 no such
user, message, view or element, 409 no app to send to, 502 the app is unreachable or its
answer is one Slack refuses, 504 it answered too late.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sandboxes.slack.state import (
    ElementNotFound,
    Json,
    MethodError,
    SlackSandboxError,
    encode_event,
    encode_interactivity,
)

if TYPE_CHECKING:
    from sandboxes.slack.server import SlackSandbox

__all__ = ["ACTS", "routes"]

STATIC = Path(__file__).with_name("static")
# Nothing inline and nothing from elsewhere but images, so data drawn by mistake as markup
# still cannot run; files are served sandboxed for the same reason.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: http: https:; object-src 'none'"
FILE_POLICY = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


class ActRefused(SlackSandboxError):
    """The page's act cannot be carried out."""

    status = 400


class NoApp(ActRefused):
    """The sandbox has no app to send to."""

    status = 409


class AppUnreachable(ActRefused):
    """The app did not answer, or answered what Slack would refuse."""

    status = 502


class AppTooSlow(ActRefused):
    """The app did not answer within Slack's 3 seconds."""

    status = 504


def routes() -> list[BaseRoute]:
    """The page's routes, mounted by :func:`sandboxes.slack.server.create_app`."""
    return [
        Route("/", page, methods=["GET"]),
        Route("/sandbox/slack", page, methods=["GET"]),
        Mount("/sandbox/static", app=StaticFiles(directory=STATIC), name="sandbox_static"),
        Route("/sandbox/state", state, methods=["GET"]),
        Route("/sandbox/act", act, methods=["POST"]),
        Route("/sandbox/files/{file_id}", file, methods=["GET"]),
    ]


def _sandbox(request: Request) -> SlackSandbox:
    return request.app.state.sandbox


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})


async def state(request: Request) -> JSONResponse:
    """Polled every ~700 ms: the whole picture only when the version moved."""
    sandbox = _sandbox(request)
    headers = {"Cache-Control": "no-store"}
    version = sandbox.version
    if request.query_params.get("since") == str(version):
        return JSONResponse({"version": version, "changed": False}, headers=headers)
    user = request.query_params.get("user") or sandbox.default_user()
    try:
        snapshot = sandbox.snapshot(user)
    except MethodError:
        return JSONResponse({"error": f"no user {user!r} in the sandbox"}, 404, headers)
    snapshot |= {"changed": True, "app_url": sandbox.app_url}
    return JSONResponse(snapshot | {"default_user": sandbox.default_user()}, headers=headers)


async def file(request: Request) -> Response:
    """An uploaded file (the digest's chart), so the page can show it inline."""
    try:
        meta, data = _sandbox(request).file(request.path_params["file_id"])
    except MethodError:
        return PlainTextResponse("file not found", 404)
    headers = {"Content-Security-Policy": FILE_POLICY, "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=meta["mimetype"], headers=headers)


async def act(request: Request) -> JSONResponse:
    """One thing the person did; the app is called from a worker thread, since it calls
    back into this server while it handles the request."""
    sandbox = _sandbox(request)
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return JSONResponse({"error": "the act must be a JSON object"}, 400)
    try:
        answer = await run_in_threadpool(perform, sandbox, body)
    except ActRefused as exc:
        return JSONResponse({"error": str(exc)}, exc.status)
    except MethodError as exc:
        return JSONResponse({"error": _method_error(exc)}, 404)
    except ElementNotFound as exc:
        return JSONResponse({"error": str(exc)}, 404)
    return JSONResponse(answer)


def perform(sandbox: SlackSandbox, body: Any) -> Json:
    """Carry out one act (see the module docstring); raises :class:`ActRefused`."""
    if not isinstance(body, dict):
        raise ActRefused("the act must be a JSON object")
    kind = body.get("kind")
    handler = ACTS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        raise ActRefused(f"unknown kind {kind!r}; one of: {', '.join(ACTS)}")
    user = _text(body, "user")
    sandbox.user(user)
    return handler(sandbox, user, body)


# --- the acts -------------------------------------------------------------------------------


def block_actions(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """A click on a button, or a pick in a select or overflow menu."""
    _app_url(sandbox)
    view_id = _optional(body, "view_id")
    channel = None if view_id else _text(body, "channel")
    ts = None if view_id else _text(body, "ts")
    payload = sandbox.block_actions(
        user,
        channel,
        ts,
        _text(body, "action_id"),
        _optional(body, "block_id"),
        _optional(body, "value"),
        is_ephemeral=view_id is None and _is_ephemeral(sandbox, user, channel, ts),
        selected_option=_object(body, "selected_option"),
        view=view_id,
        state_values=_object(body, "values"),
    )
    return _status(_forward(sandbox, encode_interactivity(payload)))


def view_submission(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """Submit the modal; the app's ack decides what happens to it, as in Slack."""
    _app_url(sandbox)
    view_id = _text(body, "view_id")
    payload = sandbox.view_submission(user, view_id, _object(body, "values") or {})
    response = _forward(sandbox, encode_interactivity(payload))
    answer = _status(response)
    if response.status_code != 200:
        return answer
    try:
        errors = sandbox.answer_submission(user, view_id, _json(response))
    except MethodError as exc:
        raise AppUnreachable(f"Slack would refuse the app's answer: {_method_error(exc)}") from exc
    return answer | ({"errors": errors} if errors else {})


def view_closed(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """Close the modal and tell the app (for views with ``notify_on_close``)."""
    _app_url(sandbox)
    payload = sandbox.view_closed(user, _text(body, "view_id"))
    return _status(_forward(sandbox, encode_interactivity(payload)))


def close_view(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """Close the modal here only: Slack tells the app nothing without ``notify_on_close``."""
    view_id = _text(body, "view_id")
    sandbox.view(view_id)
    sandbox.close_view(user, view_id)
    return {"status": None}


def block_suggestion(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """The person types into an external select: the app's options come back."""
    _app_url(sandbox)
    view_id = _optional(body, "view_id")
    payload = sandbox.block_suggestion(
        user,
        view_id,
        _text(body, "action_id"),
        _text(body, "block_id"),
        _optional(body, "value") or "",
        channel=None if view_id else _text(body, "channel"),
        message_ts=None if view_id else _text(body, "ts"),
    )
    response = _forward(sandbox, encode_interactivity(payload))
    answer, found = _status(response), _json(response)
    if response.status_code != 200:
        return answer
    if isinstance(found, dict) and isinstance(found.get("option_groups"), list):
        return answer | {"option_groups": found["option_groups"]}
    options = found.get("options") if isinstance(found, dict) else None
    return answer | {"options": options if isinstance(options, list) else []}


def app_home_opened(sandbox: SlackSandbox, user: str, body: Json) -> Json:
    """The person opens the app's Home tab: an Events API event, JSON as Slack sends it."""
    _app_url(sandbox)
    return _status(_forward(sandbox, encode_event(sandbox.app_home_opened(user))))


Act = Callable[["SlackSandbox", str, Json], Json]
ACTS: dict[str, Act] = {
    "block_actions": block_actions,
    "view_submission": view_submission,
    "view_closed": view_closed,
    "close_view": close_view,
    "block_suggestion": block_suggestion,
    "app_home_opened": app_home_opened,
}


# --- talking to the app ---------------------------------------------------------------------


def _app_url(sandbox: SlackSandbox) -> str:
    """Checked before the payload is built, so a refused act changes nothing."""
    if not sandbox.app_url:
        raise NoApp(
            "the sandbox has no app to send this to: set SlackSandbox.app_url "
            "to the app's /slack/events URL"
        )
    return sandbox.app_url


def _forward(sandbox: SlackSandbox, body: bytes) -> httpx.Response:
    """POST the signed payload to the app, within Slack's ack timeout."""
    url = _app_url(sandbox)
    try:
        return sandbox.send(url, body, timeout=sandbox.ack_timeout_s)
    except httpx.TimeoutException as exc:
        seconds = f"{sandbox.ack_timeout_s:g}"
        raise AppTooSlow(f"the app at {url} did not answer within {seconds} s") from exc
    except httpx.HTTPError as exc:
        raise AppUnreachable(f"the app at {url} is unreachable: {exc}") from exc


def _status(response: httpx.Response) -> Json:
    """The app's HTTP status; anything but 200 is what Slack shows as a failed action."""
    answer: Json = {"status": response.status_code}
    if response.status_code != 200:
        answer["error"] = f"the app answered HTTP {response.status_code}: {response.text[:200]}"
    return answer


def _json(response: httpx.Response) -> Any:
    """The app's ack body: an empty ack (Bolt's plain ``ack()``) is None."""
    try:
        return response.json() if response.content.strip() else None
    except ValueError:
        return None


def _method_error(exc: MethodError) -> str:
    return "; ".join([exc.error, *exc.messages])


# --- reading the act ------------------------------------------------------------------------


def _text(body: Json, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ActRefused(f"{name} is required (a string)")
    return value


def _optional(body: Json, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ActRefused(f"{name} must be a string")
    return value or None


def _object(body: Json, name: str) -> Json | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise ActRefused(f"{name} must be an object")
    return value


def _is_ephemeral(sandbox: SlackSandbox, user: str, channel: str | None, ts: str | None) -> bool:
    return any(m["ts"] == ts for m in sandbox.ephemeral(channel, user))
