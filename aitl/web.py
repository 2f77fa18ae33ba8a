"""The ASGI app: health now; the Slack and Zendesk endpoints mount here as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aitl import health
from aitl.bootstrap import open_database
from aitl.db import Database
from aitl.settings import Settings


def create_app(settings: Settings, *, database: Database | None = None) -> Starlette:
    """The web process. Pass ``database`` to share an already open pool (tests, demo)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = database is None
        app.state.db = database or await run_in_threadpool(open_database, settings)
        try:
            yield
        finally:
            if owned:
                app.state.db.close()

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)


async def healthz(request: Request) -> JSONResponse:
    result = await run_in_threadpool(health.check, request.app.state.db)
    body = {"status": "ok" if result.ok else "unhealthy", **result.checks}
    return JSONResponse(body, status_code=200 if result.ok else 503)
