"""The ASGI app: health, the Zendesk webhook and the Slack endpoint (Bolt, HTTP mode)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aitl.app.wiring import build_services, warm
from aitl.core import health, logs
from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.exceptions import ConfigurationError
from aitl.core.queue import build_deferrer
from aitl.core.settings import Settings
from bot.app import create_bolt_app
from bot.http import SlackEndpoint
from connectors.webhook import WebhookReceiver


def create_app(settings: Settings, *, database: Database | None = None) -> Starlette:
    """The web process. Pass ``database`` to share an already open pool (tests, demo)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = database is None
        db = database or await run_in_threadpool(open_database, settings)
        app.state.db = db
        services = build_services(settings, db, build_deferrer(db.url))
        app.state.zendesk_webhook = WebhookReceiver(services.zendesk)
        app.state.slack, socket = _slack(settings, services.slack)
        services.ready.clear()  # /healthz says "starting" until the models are loaded
        app.state.ready = services.ready
        threading.Thread(target=warm, args=(services,), name="aitl-warm", daemon=True).start()
        try:
            yield
        finally:
            if socket is not None:
                socket.close()
            if owned:
                db.close()

    routes = [
        Route("/healthz", healthz),
        Route("/zendesk/webhook", zendesk_webhook, methods=["POST"]),
        Route("/slack/events", slack_events, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_environment() -> Starlette:
    """For ``aitl web --workers N``: uvicorn imports this in each worker process."""
    settings = Settings()
    logs.install(logs.settings_secrets(settings))  # each process masks its own log records
    return create_app(settings)


async def healthz(request: Request) -> JSONResponse:
    """200 once the database answers with the current schema and the models are loaded; 503
    "starting" before, so a load balancer sends no agent's search to a cold process."""
    result = await run_in_threadpool(health.check, request.app.state.db)
    if result.ok and not request.app.state.ready.is_set():
        return JSONResponse({"status": "starting", "models": "loading", **result.checks}, 503)
    body = {"status": "ok" if result.ok else "unhealthy", **result.checks}
    return JSONResponse(body, status_code=200 if result.ok else 503)


async def zendesk_webhook(request: Request) -> Response:
    return await request.app.state.zendesk_webhook(request)


async def slack_events(request: Request) -> Response:
    endpoint = request.app.state.slack
    if endpoint is None:
        reason = "Slack is not configured here (AITL_SLACK_BOT_TOKEN, AITL_SLACK_SIGNING_SECRET)"
        return JSONResponse({"ok": False, "error": reason}, status_code=503)
    return await endpoint(request)


def _slack(settings: Settings, services) -> tuple[object | None, object | None]:
    """The /slack/events endpoint and, with Socket Mode on, the open socket."""
    if services is None:
        return None, None

    bolt = create_bolt_app(services)
    secret = settings.slack_signing_secret.get_secret_value()
    endpoint = SlackEndpoint(bolt, secret, max_bytes=settings.slack_max_body_bytes)
    if not settings.slack_socket_mode:
        return endpoint, None
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    if settings.slack_app_token is None:
        raise ConfigurationError("Socket Mode needs AITL_SLACK_APP_TOKEN (xapp-…)")
    handler = SocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
    handler.connect()
    return endpoint, handler
