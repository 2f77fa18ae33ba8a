"""What a webhook body means: a Zendesk event-subscription envelope or our trigger template.

Trigger template (paste into the trigger's "Notify webhook" action; README documents it)::

    {"aitl": 1, "ticket_id": "{{ticket.id}}", "updated_at": "{{ticket.updated_at_with_timestamp}}",
     "event": "ticket.updated"}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from connectors import exceptions

TICKET_EVENTS = {
    "zen:event-type:ticket.created": "ticket.created",
    "zen:event-type:ticket.comment_added": "ticket.comment_added",
    "zen:event-type:ticket.status_changed": "ticket.status_changed",
}
TRIGGER_EVENTS = {"ticket.created", "ticket.updated", "ticket.comment_added"}
MAX_DEPTH = 32


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    event_type: str  # our short name, or the raw Zendesk type when we do not act on it
    ticket_id: int | None
    source: str  # 'webhook' (event subscription) or 'trigger'
    payload: dict[str, Any]

    @property
    def actionable(self) -> bool:
        return self.ticket_id is not None


def parse(body: bytes) -> WebhookEvent:
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise exceptions.MalformedPayload(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise exceptions.MalformedPayload("body must be a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise exceptions.MalformedPayload(f"JSON nested deeper than {MAX_DEPTH} levels")
    if not _storable(data):  # Postgres' jsonb refuses these; Zendesk never sends them
        raise exceptions.MalformedPayload(
            "body holds a NUL character, an unpaired surrogate or a number out of range"
        )
    if isinstance(data.get("type"), str) and data["type"].startswith("zen:event-type:"):
        return _event_subscription(data)
    if "aitl" in data:
        return _trigger(data)
    raise exceptions.MalformedPayload(
        "not a Zendesk event (no 'type': 'zen:event-type:…') nor the AITL trigger template"
    )


def _event_subscription(data: dict[str, Any]) -> WebhookEvent:
    event_id = data.get("id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 200:
        raise exceptions.MalformedPayload("event 'id' must be a non-empty string")
    kind = TICKET_EVENTS.get(data["type"])
    if kind is None:
        return WebhookEvent(event_id, data["type"][:200], None, "webhook", data)
    return WebhookEvent(event_id, kind, _ticket_id(data), "webhook", data)


def _ticket_id(data: dict[str, Any]) -> int:
    subject = data.get("subject")
    detail = data.get("detail") if isinstance(data.get("detail"), dict) else {}
    raw = subject.rsplit(":", 1)[-1] if isinstance(subject, str) else detail.get("id")
    return _positive_int(raw if raw not in (None, "") else detail.get("id"), "ticket id")


def _trigger(data: dict[str, Any]) -> WebhookEvent:
    ticket_id = _positive_int(data.get("ticket_id"), "ticket_id")
    kind = data.get("event", "ticket.updated")
    if not isinstance(kind, str) or kind not in TRIGGER_EVENTS:
        raise exceptions.MalformedPayload(f"'event' must be one of {sorted(TRIGGER_EVENTS)}")
    updated = data.get("updated_at")
    if not isinstance(updated, str | int) or not str(updated).strip():
        raise exceptions.MalformedPayload("'updated_at' is required in the trigger template")
    event_id = f"trigger:{ticket_id}:{str(updated).strip()[:60]}"
    return WebhookEvent(event_id, kind, ticket_id, "trigger", data)


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise exceptions.MalformedPayload(f"{name} {str(value)[:40]!r} is not a number") from exc
    if not 0 < number < 2**63:
        raise exceptions.MalformedPayload(f"{name} {number} is out of range")
    return number


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _storable(value: Any) -> bool:
    """Whether jsonb can hold ``value``: text without NUL or lone surrogates, finite numbers."""
    if isinstance(value, str):
        return "\x00" not in value and _encodable(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
