"""Admin set-up: check the credentials, create or update our webhook, keep its secret.

Admins run ``aitl zendesk connect`` once instead of clicking through Zendesk's admin centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zenpy.lib.api_objects import Webhook

from connectors import exceptions, store
from connectors.client import _translated
from connectors.envelopes import TICKET_EVENTS

WEBHOOK_NAME = "AITL copilot"


@dataclass(frozen=True)
class Connection:
    agent: str
    role: str
    webhook_id: str
    webhook_endpoint: str
    created: bool


def connect(services, *, email: str, api_token: str, public_url: str) -> Connection:
    """Store the credentials encrypted, then point a Zendesk webhook at our endpoint."""
    if not public_url.startswith(("https://", "http://")):
        raise exceptions.ConnectorError(
            f"public URL {public_url!r} must start with https:// (where Zendesk reaches us)"
        )
    from connectors.services import API_TOKEN, EMAIL, WEBHOOK_SECRET

    client = services.client_for(email, api_token)
    me = client.me()  # nothing is stored before Zendesk accepts the credentials
    if me.get("role") not in ("admin", "agent"):
        raise exceptions.ZendeskAuthFailed(f"{email} is a {me.get('role')}, not an agent or admin")
    endpoint = public_url.rstrip("/") + "/zendesk/webhook"
    webhook_id, created = _upsert_webhook(client.zenpy, endpoint)
    secret = _signing_secret(client.zenpy, webhook_id)
    services.secrets.put(EMAIL, email)
    services.secrets.put(API_TOKEN, api_token)
    services.secrets.put(WEBHOOK_SECRET, secret)
    return Connection(me.get("email") or email, me.get("role"), webhook_id, endpoint, created)


@_translated
def _upsert_webhook(zenpy, endpoint: str) -> tuple[str, bool]:
    spec = {
        "name": WEBHOOK_NAME,
        "endpoint": endpoint,
        "http_method": "POST",
        "request_format": "json",
        "status": "active",
        "subscriptions": sorted(TICKET_EVENTS),
    }
    existing = next((w for w in zenpy.webhooks.list() if w.name == WEBHOOK_NAME), None)
    if existing is None:
        created = zenpy.webhooks.create(Webhook(**spec))
        return str(created.id), True
    zenpy.webhooks.update(existing.id, Webhook(**spec))
    return str(existing.id), False


@_translated
def _signing_secret(zenpy, webhook_id: str) -> str:
    answer: Any = zenpy.webhooks.show_secret(webhook_id)
    data = answer if isinstance(answer, dict) else answer.to_dict()
    secret = data.get("signing_secret", data)
    secret = secret.get("secret") if isinstance(secret, dict) else secret
    if not secret:
        raise exceptions.ZendeskUnavailable("Zendesk returned no signing secret for the webhook")
    return str(secret)


def status(services) -> dict[str, Any]:
    """Health, cursor lag and the last error, for `aitl zendesk status` and App Home."""
    report: dict[str, Any] = {}
    try:
        me = services.client.me()
        report["connection"] = f"ok ({me.get('email')}, {me.get('role')})"
    except exceptions.ConnectorError as exc:
        report["connection"] = f"failed: {exc}"
    with services.db.connection() as conn:
        for name in ("tickets", "help_center"):
            state = store.sync_state(conn, name)
            report[f"{name}.last_success"] = state.last_success_at if state else None
            report[f"{name}.last_error"] = state.last_error if state else None
        report["tickets.stored"] = store.count_tickets(conn)
        report.update(store.event_counts(conn))
        report.update({f"drafts.{k}": v for k, v in store.draft_counts(conn).items()})
    report["webhook_secret"] = "configured" if services.webhook_secrets() else "missing"
    return report
