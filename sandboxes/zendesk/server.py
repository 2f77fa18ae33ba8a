"""A local Zendesk: the Support, Help Center, webhook and trigger APIs over HTTP, as Zendesk
answers them, plus signed webhook deliveries and a page to look at the tickets.

It lets the Zendesk connector be tested end to end through Zenpy and lets ``aitl sandbox`` /
``aitl demo`` run the product without a Zendesk account. State lives in
:class:`sandboxes.zendesk.state.SandboxState`; this module adds webhook delivery
(:class:`ZendeskSandbox`) and the ASGI app (:func:`create_app`).
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.signature import sign
from sandboxes import faults
from sandboxes.zendesk.state import (
    MAX_EXPORT_PAGE,
    Fault,
    InvalidAttribute,
    InvalidParameter,
    Json,
    RecordedRequest,
    RecordInvalid,
    RecordNotFound,
    SandboxError,
    SandboxState,
    decode_cursor,
    encode_cursor,
    epoch,
    iso,
)

__all__ = ["Delivery", "RecordedRequest", "ZendeskSandbox", "create_app", "sign"]

API = "/api/v2"
SHOW_MANY_MAX = 100
RETRYABLE = frozenset({409, 429})
ERRORS = {
    429: ("APIRateLimitExceeded", "Number of allowed API requests per minute exceeded"),
    500: ("InternalServerError", "Something went wrong on our side"),
    503: ("ServiceUnavailable", "Zendesk is temporarily unavailable"),
}


# --- webhook delivery ---------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook's copy of one event. The body is fixed; each attempt signs it afresh."""

    event_id: str
    event_type: str
    webhook_id: str
    invocation_id: str
    body: bytes
    state: Literal["pending", "sending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: float = 0.0

    @classmethod
    def of(cls, envelope: Json, webhook_id: str) -> Delivery:
        body = json.dumps(envelope, separators=(",", ":")).encode()
        invocation = str(uuid.uuid4())
        return cls(envelope["id"], envelope["type"], webhook_id, invocation, body)


Target = Callable[[str], tuple[str, str] | None]


class WebhookOutbox:
    """Deliveries waiting to be POSTed, retried on network errors, 409, 429 and 5xx.

    With ``background`` a daemon thread sends them as they arrive; without it nothing is
    sent until :meth:`deliver_pending`, so tests decide exactly when webhooks land.
    """

    def __init__(
        self,
        target: Target,
        *,
        account_id: int,
        background: bool = True,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self._target = target
        self._account_id = account_id
        self._background = background
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return [replace(d) for d in self._deliveries]

    def enqueue(self, delivery: Delivery) -> None:
        with self._cond:
            self._deliveries.append(delivery)
            self._cond.notify_all()
            if self._background and self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="zendesk-sandbox-webhooks", daemon=True
                )
                self._thread.start()

    def deliver_pending(self) -> list[Delivery]:
        """Attempt every pending delivery once, now; failures stay pending until retries run out."""
        claimed = self._claim(lambda _: True)
        for delivery in claimed:
            self._attempt(delivery)
        return [replace(d) for d in claimed]

    def redeliver(self, event_id: str) -> list[Delivery]:
        """Send a delivered event again, as Zendesk does when it missed the acknowledgement."""
        with self._cond:
            found = [d for d in self._deliveries if d.event_id == event_id]
        if not any(d.state == "delivered" for d in found):
            raise RecordNotFound(f"no delivered event {event_id}")
        for delivery in (d for d in found if d.state == "delivered"):
            self._send(delivery)
        return [replace(d) for d in found]

    def signed_copy(
        self, event_id: str, at: datetime | None = None
    ) -> tuple[str, bytes, dict[str, str]]:
        """(endpoint, body, headers) of a delivery of ``event_id`` signed as of ``at``, not
        sent: for tests and benchmarks that send copies themselves, e.g. all at once."""
        with self._cond:
            found = next((d for d in self._deliveries if d.event_id == event_id), None)
        target = self._target(found.webhook_id) if found is not None else None
        if found is None or target is None:
            raise RecordNotFound(f"no delivery of event {event_id} to a live webhook")
        endpoint, secret = target
        return endpoint, found.body, self._headers(found, secret, at)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is pending or being sent; False on timeout."""
        with self._cond:
            busy = ("pending", "sending")
            idle = lambda: all(d.state not in busy for d in self._deliveries)  # noqa: E731
            return self._cond.wait_for(idle, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)

    def _run(self) -> None:
        while not self._closed:
            batch = self._claim(lambda d: d.next_attempt_at <= time.monotonic())
            for delivery in batch:
                self._attempt(delivery)
            if not batch:
                self._wait_for_work()

    def _wait_for_work(self) -> None:
        with self._cond:
            if self._closed:
                return
            due = [d.next_attempt_at for d in self._deliveries if d.state == "pending"]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            self._cond.wait(timeout)

    def _claim(self, due: Callable[[Delivery], bool]) -> list[Delivery]:
        with self._cond:
            claimed = [d for d in self._deliveries if d.state == "pending" and due(d)]
            for delivery in claimed:
                delivery.state = "sending"
            return claimed

    def _attempt(self, delivery: Delivery) -> None:
        retryable = self._send(delivery)
        with self._cond:
            if delivery.last_status is not None and 200 <= delivery.last_status < 300:
                delivery.state = "delivered"
            elif retryable and delivery.attempts < self.max_attempts:
                delivery.state = "pending"
                wait = self.backoff_s * 2 ** (delivery.attempts - 1)
                delivery.next_attempt_at = time.monotonic() + wait
            else:
                delivery.state = "failed"
            self._cond.notify_all()

    def _send(self, delivery: Delivery) -> bool:
        """POST one signed copy; True when a failure is worth retrying."""
        target = self._target(delivery.webhook_id)
        delivery.attempts += 1
        delivery.last_status = None
        if target is None:
            delivery.last_error = "the webhook was deleted"
            return False
        endpoint, secret = target
        headers = self._headers(delivery, secret)
        try:
            response = httpx.post(
                endpoint, content=delivery.body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}"
            return True
        delivery.last_status, delivery.last_error = response.status_code, None
        return response.status_code in RETRYABLE or response.status_code >= 500

    def _headers(
        self, delivery: Delivery, secret: str, at: datetime | None = None
    ) -> dict[str, str]:
        timestamp = iso(at or datetime.now(UTC))
        return {
            "Content-Type": "application/json",
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Account-Id": str(self._account_id),
            "X-Zendesk-Webhook-Id": delivery.webhook_id,
            "X-Zendesk-Webhook-Invocation-Id": delivery.invocation_id,
            "X-Zendesk-Webhook-Signature": sign(secret, timestamp, delivery.body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        }


class ZendeskSandbox(SandboxState):
    """The sandbox's account state plus the outbox that delivers its webhook events."""

    def __init__(
        self,
        *,
        agent_email: str = "agent@sandbox.example",
        api_token: str = "sandbox-token",
        agent_name: str = "Sandbox Agent",
        account_id: int = 10000001,
        clock: Callable[[], datetime] | None = None,
        deliver_in_background: bool = True,
    ) -> None:
        super().__init__(
            agent_email=agent_email,
            api_token=api_token,
            agent_name=agent_name,
            account_id=account_id,
            clock=clock,
        )
        self.outbox = WebhookOutbox(
            self.webhook_target, account_id=account_id, background=deliver_in_background
        )

    def _queue(self, envelope: Json, webhook_id: str) -> None:
        self.outbox.enqueue(Delivery.of(envelope, webhook_id))

    def deliver_pending(self) -> list[Delivery]:
        """Send every queued webhook delivery now, once each (deterministic tests)."""
        return self.outbox.deliver_pending()

    def redeliver(self, event_id: str) -> list[Delivery]:
        """Send a delivered event again: the same body, a fresh timestamp and signature."""
        return self.outbox.redeliver(event_id)

    def signed_copy(
        self, event_id: str, at: datetime | None = None
    ) -> tuple[str, bytes, dict[str, str]]:
        """A delivery of ``event_id`` signed as of ``at`` but not sent (see WebhookOutbox)."""
        return self.outbox.signed_copy(event_id, at)

    def close(self) -> None:
        """Stop the background webhook sender."""
        self.outbox.close()


# --- the HTTP app: plumbing ---------------------------------------------------------------


def create_app(sandbox: ZendeskSandbox) -> Starlette:
    """The ASGI app serving ``sandbox`` under ``/api/v2`` and its page under ``/sandbox``."""
    app = Starlette(
        routes=[*_api_routes(), *_page_routes()],
        middleware=[Middleware(ZendeskGate)],
        exception_handlers={SandboxError: _sandbox_error},
    )
    app.state.sandbox = sandbox
    return app


class ZendeskGate(BaseHTTPMiddleware):
    """Around every API call: authentication, injected faults, the request log."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not request.url.path.startswith(f"{API}/"):
            return await call_next(request)
        sandbox: ZendeskSandbox = request.app.state.sandbox
        body = await request.body()
        response = await self._answer(sandbox, request, call_next)
        parsed = _json_or_none(body)
        sandbox.record(
            RecordedRequest(
                request.method, request.url.path, request.url.query, response.status_code, parsed
            )
        )
        return response

    async def _answer(
        self, sandbox: ZendeskSandbox, request: Request, call_next: RequestResponseEndpoint
    ) -> Response:
        if not _authenticated(sandbox, request):
            headers = {"WWW-Authenticate": 'Basic realm="Web Password"'}
            return JSONResponse({"error": "Couldn't authenticate you"}, 401, headers)
        fault = sandbox.take_fault(request.method, request.url.path)
        return await faults.around(fault, functools.partial(call_next, request), _fault_response)


def _authenticated(sandbox: ZendeskSandbox, request: Request) -> bool:
    """HTTP Basic with ``{email}/token:{api_token}``, the API-token scheme Zenpy uses."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, token = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    email, marker, _ = user.rpartition("/")
    return marker == "/" and user.endswith("/token") and sandbox.authenticate(email, token)


def _fault_response(fault: Fault) -> JSONResponse:
    status = fault.status or 500
    error, description = ERRORS.get(status, ("Error", f"Injected failure {status}"))
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    return JSONResponse({"error": error, "description": description}, status, headers)


async def _sandbox_error(request: Request, exc: SandboxError) -> JSONResponse:
    body: Json = {"error": exc.error, "description": str(exc)}
    if isinstance(exc, InvalidAttribute):  # Help Center's own shape
        body = {"error": {"title": InvalidAttribute.__doc__, "message": str(exc)}}
    if isinstance(exc, RecordInvalid):
        body = {"error": exc.error, "description": RecordInvalid.__doc__}
        body["details"] = {"base": [{"description": str(exc)}]}
    return JSONResponse(body, exc.status_code)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


async def _payload(request: Request, key: str) -> Json:
    """The object under ``key`` in the JSON body (``{"ticket": {...}}``)."""
    try:
        data = await request.json()
    except ValueError as exc:
        raise SandboxError("The request body is not valid JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise RecordInvalid(f"{key}: is required")
    return data[key]


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidParameter(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    return None if raw is None else raw.lower() == "true"


def _ids_param(request: Request) -> list[int]:
    """``show_many``'s ids: Zendesk takes at most 100 a request, so a client must batch."""
    raw = request.query_params.get("ids", "")
    try:
        ids = [int(part) for part in raw.split(",") if part]
    except ValueError as exc:
        raise InvalidParameter("ids must be comma-separated integers") from exc
    if len(ids) > SHOW_MANY_MAX:
        raise InvalidParameter(f"ids: at most {SHOW_MANY_MAX} a request, {len(ids)} given")
    return ids


def _id(request: Request) -> int:
    return int(request.path_params["id"])


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _sandbox(request: Request) -> ZendeskSandbox:
    return request.app.state.sandbox


# --- pagination: Zendesk's cursor (page[size]) and offset (page/per_page) styles -----------


def paginate(
    request: Request, key: str, items: list[Json], *, cursor: bool = False, hc: bool = False
) -> JSONResponse:
    """Zendesk list response: cursor style when asked for (``page[...]``), else offset."""
    if cursor or any(k.startswith("page[") for k in request.query_params):
        page, extra = _cursor_page(request, items)
    else:
        page, extra = _offset_page(request, items, hc)
    return JSONResponse({key: page, **extra})


def _cursor_page(request: Request, items: list[Json]) -> tuple[list[Json], Json]:
    size = _int_param(request, "page[size]", 100, 1, 100)
    start, end = 0, None
    if after := request.query_params.get("page[after]"):
        start = decode_cursor(after)[1]
    elif before := request.query_params.get("page[before]"):
        end = decode_cursor(before)[1]
        start = max(0, end - size)
    page = items[start : start + size if end is None else end]
    after_cursor = encode_cursor("after", start + len(page)) if page else None
    before_cursor = encode_cursor("before", start) if page else None
    has_more = start + len(page) < len(items)
    meta = {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor}
    links = {"next": _link(request, "page[after]", after_cursor), "prev": None}
    links["prev"] = _link(request, "page[before]", before_cursor)
    return page, {"meta": meta, "links": links}


def _link(request: Request, name: str, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    url = request.url.remove_query_params(["page[after]", "page[before]"])
    return str(url.include_query_params(**{name: cursor}))


def _offset_page(request: Request, items: list[Json], hc: bool) -> tuple[list[Json], Json]:
    """Support's ``next_page``/``previous_page``/``count``; Help Center adds page numbers."""
    per_page = _int_param(request, "per_page", 100, 1, 100)
    number = _int_param(request, "page", 1, 1, 1_000_000)
    start = (number - 1) * per_page
    following = request.url.include_query_params(page=number + 1)
    previous = request.url.include_query_params(page=number - 1)
    extra: Json = {"next_page": str(following) if start + per_page < len(items) else None}
    extra |= {"previous_page": str(previous) if number > 1 else None, "count": len(items)}
    if hc:
        extra |= {"page": number, "per_page": per_page, "sort_by": "position"}
        extra |= {"page_count": math.ceil(len(items) / per_page), "sort_order": "asc"}
    return items[start : start + per_page], extra


# --- rendering: add the url fields, which depend on the host the client called ------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _url(base: str, path: str) -> str:
    return f"{base}{API}/{path}.json"


def _render_user(user: Json, base: str) -> Json:
    return {"url": _url(base, f"users/{user['id']}"), **user}


def _render_ticket(ticket: Json, base: str) -> Json:
    return {"url": _url(base, f"tickets/{ticket['id']}"), **ticket}


def _render_hc(resource: Json, base: str, kind: str, name: str) -> Json:
    """Help Center objects carry an API ``url`` and the public ``html_url``."""
    locale, rid = resource["locale"], resource["id"]
    url = _url(base, f"help_center/{locale}/{kind}/{rid}")
    html_url = f"{base}/hc/{locale}/{kind}/{rid}-{_slug(resource[name])}"
    return {"id": rid, "url": url, "html_url": html_url, **resource}


def _render_article(article: Json, base: str) -> Json:
    return _render_hc(article, base, "articles", "title")


def _render_with_url(resource: Json, base: str, path: str) -> Json:
    return {"url": _url(base, f"{path}/{resource['id']}"), **resource}


# --- users and tickets --------------------------------------------------------------------


async def users_me(request: Request) -> JSONResponse:
    sandbox = _sandbox(request)
    return JSONResponse({"user": _render_user(sandbox.user(sandbox.agent["id"]), _base(request))})


async def show_user(request: Request) -> JSONResponse:
    return JSONResponse(
        {"user": _render_user(_sandbox(request).user(_id(request)), _base(request))}
    )


async def show_many_users(request: Request) -> JSONResponse:
    users = _sandbox(request).users(_ids_param(request))
    return paginate(request, "users", [_render_user(u, _base(request)) for u in users])


async def list_tickets(request: Request) -> JSONResponse:
    tickets = _sandbox(request).tickets()
    return paginate(request, "tickets", [_render_ticket(t, _base(request)) for t in tickets])


async def show_many_tickets(request: Request) -> JSONResponse:
    tickets = _sandbox(request).tickets(_ids_param(request))
    return paginate(request, "tickets", [_render_ticket(t, _base(request)) for t in tickets])


async def show_ticket(request: Request) -> JSONResponse:
    ticket = _sandbox(request).ticket(_id(request))
    return JSONResponse({"ticket": _render_ticket(ticket, _base(request))})


async def create_ticket(request: Request) -> JSONResponse:
    """``POST /tickets``: requester by id, by ``{"email", "name"}``, or the caller."""
    sandbox, spec = _sandbox(request), await _payload(request, "ticket")
    requester_id = spec.get("requester_id") or sandbox.agent["id"]
    if isinstance(spec.get("requester"), dict) and spec["requester"].get("email"):
        requester = spec["requester"]
        requester_id = sandbox.ensure_user(requester["email"], requester.get("name"))["id"]
    comment = spec.get("comment") or {"body": spec.get("description")}
    ticket, audit = sandbox.open_ticket(spec, comment, int(requester_id))
    return JSONResponse({"ticket": _render_ticket(ticket, _base(request)), "audit": audit}, 201)


async def update_ticket(request: Request) -> JSONResponse:
    """``PUT /tickets/{id}``: field changes and an optional comment by the calling agent."""
    sandbox, changes = _sandbox(request), await _payload(request, "ticket")
    ticket, audit = sandbox.update_ticket(_id(request), changes, sandbox.agent["id"])
    return JSONResponse({"ticket": _render_ticket(ticket, _base(request)), "audit": audit})


async def list_comments(request: Request) -> JSONResponse:
    comments = _sandbox(request).comments(_id(request))
    return paginate(request, "comments", [_render_comment(c, _base(request)) for c in comments])


def _render_comment(comment: Json, base: str) -> Json:
    """Attachments get their API ``url`` and a ``content_url`` on the host the client called
    (raw attachment JSON a test replays is served as given)."""
    rendered = [
        _render_attachment(a, base) if isinstance(a, dict) and "id" in a else a
        for a in comment.get("attachments") or []
    ]
    return {**comment, "attachments": rendered}


def _render_attachment(attachment: Json, base: str) -> Json:
    hosted = {
        key: f"{base}{attachment[key]}"
        for key in ("content_url", "mapped_content_url")
        if isinstance(attachment.get(key), str) and attachment[key].startswith("/")
    }
    return {"url": _url(base, f"attachments/{attachment['id']}"), **attachment, **hosted}


async def create_upload(request: Request) -> JSONResponse:
    """``POST /uploads?filename=``: the file as the body; its token goes in a comment's
    ``uploads`` (Zenpy's ``attachments.upload``)."""
    sandbox = _sandbox(request)
    content_type = request.headers.get("content-type") or "application/octet-stream"
    token = sandbox.upload(
        request.query_params.get("filename", ""), await request.body(), content_type
    )
    attachment = _render_attachment(sandbox.upload_json(token), _base(request))
    upload = {"token": token, "expires_at": None, "attachments": [attachment]}
    return JSONResponse({"upload": upload | {"attachment": attachment}}, 201)


async def attachment_file(request: Request) -> Response:
    """An attached file at its ``content_url``: signed-in only, as with Zendesk's private
    attachments, so a client must send its credentials (and the request is logged)."""
    sandbox = _sandbox(request)
    if not _authenticated(sandbox, request):
        status, response = 401, Response(status_code=401)
    else:
        try:
            attachment, data = sandbox.attachment_file(request.path_params["token"])
            kind = attachment.get("content_type") or "application/octet-stream"
            status, response = 200, Response(data, media_type=kind)
        except RecordNotFound:
            status, response = 404, Response(status_code=404)
    query = request.url.query
    sandbox.record(RecordedRequest(request.method, request.url.path, query, status))
    return response


async def incremental_tickets(request: Request) -> JSONResponse:
    """Cursor-based incremental export; ``after_url`` keeps ``per_page`` across pages. As in
    Zendesk, a request without ``per_page`` gets 1,000 tickets, and more is capped at 1,000."""
    query, sandbox = request.query_params, _sandbox(request)
    per_page = min(_int_param(request, "per_page", MAX_EXPORT_PAGE, 1, 2**31), MAX_EXPORT_PAGE)
    if "cursor" in query:
        page = sandbox.export_tickets(cursor=query["cursor"], per_page=per_page)
    else:
        start = _int_param(request, "start_time", -1, 0, 2**40)
        if start < 0:
            raise InvalidParameter("start_time or cursor is required")
        page = sandbox.export_tickets(start_time=start, per_page=per_page)
    tickets = [_render_ticket(t, _base(request)) for t in page.tickets]
    body = {"tickets": tickets, "after_cursor": page.after_cursor}
    body["after_url"] = _export_url(request, page.after_cursor)
    body |= {"before_cursor": page.before_cursor, "end_of_stream": page.end_of_stream}
    body["before_url"] = _export_url(request, page.before_cursor)
    return JSONResponse(body)


def _export_url(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = f"cursor={cursor}"
    if "per_page" in request.query_params:
        query += f"&per_page={request.query_params['per_page']}"
    return f"{_base(request)}{API}/incremental/tickets/cursor.json?{query}"


# --- brands, user segments, permission groups ----------------------------------------------


def _account_host(request: Request) -> tuple[str, str]:
    """(first label, rest) of the host called: ``acme.0.0.1:8000`` → ``acme``, ``0.0.1:8000``."""
    host = request.headers.get("host") or request.url.netloc
    label, _, domain = host.partition(".")
    return label, domain


def _brand_id(request: Request) -> int:
    """The brand whose Help Center answers at the host called (the first label of ``Host``,
    as ``<brand>.zendesk.com``); 403 or 404 when that Help Center is closed to the token."""
    sandbox = _sandbox(request)
    brand_id = sandbox.brand_at(_account_host(request)[0])
    sandbox.check_help_center(brand_id)
    return brand_id


def _render_brand(brand: Json, request: Request) -> Json:
    """The default brand answers at the account's own host; another at its subdomain's."""
    label, domain = _account_host(request)
    subdomain = brand["subdomain"]
    if brand["id"] == _sandbox(request).default_brand_id == _sandbox(request).brand_at(label):
        subdomain = label
    scheme = request.url.scheme
    url = _url(_base(request), f"brands/{brand['id']}")
    brand_url = f"{scheme}://{subdomain}.{domain}"
    return {"url": url, **brand, "subdomain": subdomain, "brand_url": brand_url}


async def list_brands(request: Request) -> JSONResponse:
    brands = [_render_brand(b, request) for b in _sandbox(request).brands()]
    return paginate(request, "brands", brands)


async def show_brand(request: Request) -> JSONResponse:
    brand = _sandbox(request).brand(_id(request))
    return JSONResponse({"brand": _render_brand(brand, request)})


async def list_user_segments(request: Request) -> JSONResponse:
    found = _sandbox(request).user_segments()
    rendered = [_render_with_url(s, _base(request), "help_center/user_segments") for s in found]
    return paginate(request, "user_segments", rendered)


async def show_user_segment(request: Request) -> JSONResponse:
    segment = _sandbox(request).user_segment(_id(request))
    rendered = _render_with_url(segment, _base(request), "help_center/user_segments")
    return JSONResponse({"user_segment": rendered})


async def list_permission_groups(request: Request) -> JSONResponse:
    found = _sandbox(request).permission_groups()
    return paginate(request, "permission_groups", found)


async def show_permission_group(request: Request) -> JSONResponse:
    return JSONResponse({"permission_group": _sandbox(request).permission_group(_id(request))})


# --- Help Center --------------------------------------------------------------------------


def _locale(request: Request) -> str | None:
    """From the path (``help_center/{locale}/...``) or ``?locale=``, as Zenpy sends it."""
    locale = request.path_params.get("locale") or request.query_params.get("locale")
    return locale.lower() if locale else None


async def help_center_locales(request: Request) -> JSONResponse:
    locales, default = _sandbox(request).help_center_locales(_brand_id(request))
    return JSONResponse({"locales": locales, "default_locale": default})


async def list_articles(request: Request) -> JSONResponse:
    section = request.path_params.get("id")
    found = _sandbox(request).articles(
        _locale(request), int(section) if section else None, brand_id=_brand_id(request)
    )
    return paginate(
        request, "articles", [_render_article(a, _base(request)) for a in found], hc=True
    )


async def show_article(request: Request) -> JSONResponse:
    article = _sandbox(request).article(_id(request), _locale(request), brand_id=_brand_id(request))
    return JSONResponse({"article": _render_article(article, _base(request))})


async def create_article(request: Request) -> JSONResponse:
    sandbox, spec = _sandbox(request), await _payload(request, "article")
    brand_id = _brand_id(request)
    article = sandbox.create_article(_id(request), spec, sandbox.agent["id"], brand_id=brand_id)
    return JSONResponse({"article": _render_article(article, _base(request))}, 201)


async def list_sections(request: Request) -> JSONResponse:
    found = _sandbox(request).sections(_locale(request), brand_id=_brand_id(request))
    rendered = [_render_hc(s, _base(request), "sections", "name") for s in found]
    return paginate(request, "sections", rendered, hc=True)


async def list_categories(request: Request) -> JSONResponse:
    found = _sandbox(request).categories(_locale(request), brand_id=_brand_id(request))
    rendered = [_render_hc(c, _base(request), "categories", "name") for c in found]
    return paginate(request, "categories", rendered, hc=True)


async def incremental_articles(request: Request) -> JSONResponse:
    """Time-based article export. A page never splits one second's changes, so following
    ``next_page`` neither loops nor skips; ``end_time`` is safe to store as the next start."""
    start = _int_param(request, "start_time", -1, 0, 2**40)
    if start < 0:
        raise InvalidParameter("start_time is required")
    per_page = _int_param(request, "per_page", 1000, 1, 1000)
    changed = _sandbox(request).articles_since(start, brand_id=_brand_id(request))
    page = changed[:per_page]
    end_time = epoch(page[-1]["updated_at"]) if page else start
    page = [a for a in changed if epoch(a["updated_at"]) <= end_time] if page else []
    more = len(page) < len(changed)
    next_page = str(request.url.include_query_params(start_time=end_time + 1)) if more else None
    articles = [_render_article(a, _base(request)) for a in page]
    body = {"articles": articles, "next_page": next_page, "end_time": end_time}
    return JSONResponse(body | {"count": len(articles), "end_of_stream": not more})


# --- macros, webhooks, triggers -----------------------------------------------------------


async def list_macros(request: Request) -> JSONResponse:
    """``GET /macros`` (optionally ``?active=true``) and ``GET /macros/active``."""
    only_active = request.url.path.endswith(("/active", "/active.json"))
    found = _sandbox(request).macros(True if only_active else _bool_param(request, "active"))
    rendered = [_render_with_url(m, _base(request), "macros") for m in found]
    return paginate(request, "macros", rendered)


async def show_macro(request: Request) -> JSONResponse:
    macro = _sandbox(request).macro(_id(request))
    return JSONResponse({"macro": _render_with_url(macro, _base(request), "macros")})


async def list_webhooks(request: Request) -> JSONResponse:
    return paginate(request, "webhooks", _sandbox(request).webhooks(), cursor=True)


async def create_webhook(request: Request) -> JSONResponse:
    webhook = _sandbox(request).create_webhook(await _payload(request, "webhook"))
    return JSONResponse({"webhook": webhook}, 201)


async def webhook(request: Request) -> Response:
    """Show, update (PUT and PATCH answer 204, as Zendesk does) or delete one webhook."""
    sandbox, webhook_id = _sandbox(request), request.path_params["id"]
    if request.method == "GET":
        return JSONResponse({"webhook": sandbox.webhook(webhook_id)})
    if request.method == "DELETE":
        sandbox.delete_webhook(webhook_id)
    else:
        sandbox.update_webhook(webhook_id, await _payload(request, "webhook"))
    return Response(status_code=204)


async def signing_secret(request: Request) -> JSONResponse:
    """GET shows the secret; POST resets it (201)."""
    reset = request.method == "POST"
    secret = _sandbox(request).signing_secret(request.path_params["id"], reset=reset)
    body = {"signing_secret": {"algorithm": "SHA256", "secret": secret}}
    return JSONResponse(body, 201 if reset else 200)


async def list_triggers(request: Request) -> JSONResponse:
    found = _sandbox(request).triggers(_bool_param(request, "active"))
    return paginate(
        request, "triggers", [_render_with_url(t, _base(request), "triggers") for t in found]
    )


async def create_trigger(request: Request) -> JSONResponse:
    trigger = _sandbox(request).create_trigger(await _payload(request, "trigger"))
    return JSONResponse({"trigger": _render_with_url(trigger, _base(request), "triggers")}, 201)


async def trigger(request: Request) -> Response:
    sandbox, trigger_id = _sandbox(request), _id(request)
    if request.method == "DELETE":
        sandbox.delete_trigger(trigger_id)
        return Response(status_code=204)
    if request.method == "PUT":
        sandbox.update_trigger(trigger_id, await _payload(request, "trigger"))
    found = sandbox.trigger(trigger_id)
    return JSONResponse({"trigger": _render_with_url(found, _base(request), "triggers")})


def _api(path: str, endpoint: Callable[..., Any], methods: list[str]) -> list[BaseRoute]:
    """A route with and without ``.json``: Zenpy appends it to most paths, others don't."""
    return [Route(f"{API}/{path}{suffix}", endpoint, methods=methods) for suffix in (".json", "")]


# Specific paths first: ``help_center/{locale}/...`` would swallow the rest.
API_ROUTES: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("users/me", users_me, ["GET"]),
    ("users/show_many", show_many_users, ["GET"]),
    ("users/{id:int}", show_user, ["GET"]),
    ("tickets", list_tickets, ["GET"]),
    ("tickets", create_ticket, ["POST"]),
    ("tickets/show_many", show_many_tickets, ["GET"]),
    ("tickets/{id:int}", show_ticket, ["GET"]),
    ("tickets/{id:int}", update_ticket, ["PUT"]),
    ("tickets/{id:int}/comments", list_comments, ["GET"]),
    ("uploads", create_upload, ["POST"]),
    ("incremental/tickets/cursor", incremental_tickets, ["GET"]),
    ("brands", list_brands, ["GET"]),
    ("brands/{id:int}", show_brand, ["GET"]),
    ("help_center/user_segments", list_user_segments, ["GET"]),
    ("help_center/user_segments/{id:int}", show_user_segment, ["GET"]),
    ("guide/permission_groups", list_permission_groups, ["GET"]),
    ("guide/permission_groups/{id:int}", show_permission_group, ["GET"]),
    ("help_center/locales", help_center_locales, ["GET"]),
    ("help_center/incremental/articles", incremental_articles, ["GET"]),
    ("help_center/articles", list_articles, ["GET"]),
    ("help_center/articles/{id:int}", show_article, ["GET"]),
    ("help_center/sections", list_sections, ["GET"]),
    ("help_center/sections/{id:int}/articles", list_articles, ["GET"]),
    ("help_center/sections/{id:int}/articles", create_article, ["POST"]),
    ("help_center/categories", list_categories, ["GET"]),
    ("help_center/{locale}/articles", list_articles, ["GET"]),
    ("help_center/{locale}/articles/{id:int}", show_article, ["GET"]),
    ("help_center/{locale}/sections", list_sections, ["GET"]),
    ("help_center/{locale}/sections/{id:int}/articles", list_articles, ["GET"]),
    ("help_center/{locale}/categories", list_categories, ["GET"]),
    ("macros", list_macros, ["GET"]),
    ("macros/active", list_macros, ["GET"]),
    ("macros/{id:int}", show_macro, ["GET"]),
    ("webhooks", list_webhooks, ["GET"]),
    ("webhooks", create_webhook, ["POST"]),
    ("webhooks/{id}/signing_secret", signing_secret, ["GET", "POST"]),
    ("webhooks/{id}", webhook, ["GET", "PUT", "PATCH", "DELETE"]),
    ("triggers", list_triggers, ["GET"]),
    ("triggers", create_trigger, ["POST"]),
    ("triggers/{id:int}", trigger, ["GET", "PUT", "DELETE"]),
]


def _api_routes() -> list[BaseRoute]:
    return [
        route for path, endpoint, methods in API_ROUTES for route in _api(path, endpoint, methods)
    ]


# --- the page -----------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Zendesk sandbox</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; }}
.comment {{ border-left: 4px solid #1f73b7; padding: .5rem 1rem; margin: 1rem 0; }}
.internal {{ border-color: #f5a623; background: #fff8e6; }}
.label {{ font-size: .8rem; font-weight: 600; text-transform: uppercase; }}
pre {{ white-space: pre-wrap; font: inherit; margin: .3rem 0 0; }}
</style></head><body>{content}</body></html>"""


def _page(title: str, content: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), content=content))


async def tickets_page(request: Request) -> HTMLResponse:
    sandbox = _sandbox(request)
    rows = "".join(_ticket_row(sandbox, t) for t in reversed(sandbox.tickets()))
    head = "".join(f"<th>{h}</th>" for h in ("Ticket", "Subject", "Status", "Requester", "Updated"))
    table = f"<table><tr>{head}</tr>{rows}</table>" if rows else "<p>No tickets yet.</p>"
    return _page("Tickets", f"<h1>Zendesk sandbox: tickets</h1>{table}")


async def ticket_page(request: Request) -> HTMLResponse:
    sandbox, e = _sandbox(request), html.escape
    ticket = sandbox.ticket(_id(request))
    comments = "".join(_comment_html(sandbox, c) for c in sandbox.comments(ticket["id"]))
    header = f"<h1>#{ticket['id']} {e(ticket['subject'])}</h1><p>Status: {e(ticket['status'])}"
    back = '</p><p><a href="/sandbox/zendesk">All tickets</a></p>'
    return _page(f"#{ticket['id']}", header + back + comments)


def _ticket_row(sandbox: ZendeskSandbox, ticket: Json) -> str:
    link = f'<a href="/sandbox/zendesk/tickets/{ticket["id"]}">#{ticket["id"]}</a>'
    requester = sandbox.user(ticket["requester_id"])["email"]
    cells = (ticket["subject"], ticket["status"], requester, ticket["updated_at"])
    return f"<tr><td>{link}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def _comment_html(sandbox: ZendeskSandbox, comment: Json) -> str:
    e = html.escape
    kind, label = ("public", "Public reply") if comment["public"] else ("internal", "Internal note")
    author = sandbox.user(comment["author_id"])["name"]
    meta = f"{label} · {e(author)} · {e(comment['created_at'])}"
    body = f"<pre>{e(comment['plain_body'])}</pre>"
    return f'<div class="comment {kind}"><div class="label">{meta}</div>{body}</div>'


def _page_routes() -> list[BaseRoute]:
    return [
        Route("/sandbox/zendesk", tickets_page, methods=["GET"]),
        Route("/sandbox/zendesk/tickets/{id:int}", ticket_page, methods=["GET"]),
        Route("/attachments/token/{token}/", attachment_file, methods=["GET"]),
    ]
