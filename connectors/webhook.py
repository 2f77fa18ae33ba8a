"""``POST /zendesk/webhook``: verify, record, enqueue, answer. Nothing slow happens here.

The event row and its job are written in one transaction, so an acknowledged event always
has its job, and a redelivery of the same event id adds none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from aitl.core.request_body import read_within
from connectors import envelopes, exceptions, jobs, signature, store

log = logging.getLogger(__name__)
SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
SECRET_TTL_S = 30.0


@dataclass(frozen=True)
class Accepted:
    status: str  # 'queued' | 'duplicate' | 'ignored'
    event_id: str


class WebhookReceiver:
    def __init__(self, services) -> None:
        self.services = services
        self.settings = services.settings
        self._secrets: tuple[float, list[str]] = (0.0, [])

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            body = await self._body(request)
            accepted = await run_in_threadpool(self.accept, request.headers, body)
        except exceptions.WebhookRejected as exc:
            log.warning("zendesk webhook rejected: %s", exc)
            return _error(exc.status_code, type(exc).__name__, str(exc))
        except exceptions.NotConnected:
            return _error(503, "NotConfigured", "no Zendesk webhook signing secret is configured")
        except ClientDisconnect:
            return _error(400, "ClientDisconnect", "the body was not received in full")
        return JSONResponse({"status": accepted.status, "event_id": accepted.event_id})

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.zendesk_webhook_max_bytes
        body = await read_within(request, limit)
        if body is None:
            raise exceptions.PayloadTooLarge(f"body is over {limit} bytes")
        return body

    def accept(self, headers, body: bytes) -> Accepted:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise exceptions.UnsupportedContentType(
                f"content type {media or '(none)'!r}; Zendesk webhooks must send application/json"
            )
        secrets = self._current_secrets()
        if not secrets:
            raise exceptions.NotConnected()
        signature.verify(
            secrets,
            signature=headers.get(SIGNATURE),
            timestamp=headers.get(TIMESTAMP),
            body=body,
            now=datetime.now(UTC),
            tolerance_s=self.settings.zendesk_webhook_tolerance_s,
        )
        event = envelopes.parse(body)
        return self._record(event, headers[SIGNATURE])

    def _record(self, event: envelopes.WebhookEvent, sig: str) -> Accepted:
        db, queue = self.services.db, self.services.queue
        with db.connection() as conn:
            if not store.remember_signature(conn, sig, self.settings.zendesk_webhook_tolerance_s):
                raise exceptions.ReplayedDelivery("this signed delivery was already accepted")
            if not store.record_event(conn, event):
                return Accepted("duplicate", event.event_id)
            if not event.actionable:
                return Accepted("ignored", event.event_id)
            job_id = jobs.defer_event(queue, conn, event.event_id, event.ticket_id)
            store.set_event_job(conn, event.event_id, job_id)
        return Accepted("queued", event.event_id)

    def _current_secrets(self) -> list[str]:
        fetched_at, secrets = self._secrets
        if time.monotonic() - fetched_at > SECRET_TTL_S or not secrets:
            secrets = self.services.webhook_secrets()
            self._secrets = (time.monotonic(), secrets)
        return secrets


def _error(status: int, kind: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": kind, "reason": reason}, status_code=status)
