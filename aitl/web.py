"""The ASGI app: health and the Zendesk webhook; Slack mounts here with the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aitl import health
from aitl.bootstrap import open_database
from aitl.db import Database
from aitl.queue import build_deferrer
from aitl.settings import Settings


def create_app(settings: Settings, *, database: Database | None = None) -> Starlette:
    """The web process. Pass ``database`` to share an already open pool (tests, demo)."""
    from connectors.services import ZendeskServices
    from connectors.webhook import WebhookReceiver

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = database is None
        db = database or await run_in_threadpool(open_database, settings)
        app.state.db = db
        queue = build_deferrer(db.url)
        app.state.zendesk_webhook = WebhookReceiver(ZendeskServices(settings, db, queue))
        try:
            yield
        finally:
            if owned:
                db.close()

    routes = [
        Route("/healthz", healthz),
        Route("/zendesk/webhook", zendesk_webhook, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def healthz(request: Request) -> JSONResponse:
    result = await run_in_threadpool(health.check, request.app.state.db)
    body = {"status": "ok" if result.ok else "unhealthy", **result.checks}
    return JSONResponse(body, status_code=200 if result.ok else 503)


async def zendesk_webhook(request: Request) -> Response:
    return await request.app.state.zendesk_webhook(request)
