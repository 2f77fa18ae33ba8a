"""Reading Slack's interactivity payloads: who clicked, what, when, and where to answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.exceptions import MalformedPayload


def user_id(body: dict[str, Any]) -> str:
    user = body.get("user") or {}
    found = user.get("id") if isinstance(user, dict) else None
    found = found or body.get("user_id")
    if not isinstance(found, str) or not found:
        raise MalformedPayload("the payload names no user")
    return found


def first_action(body: dict[str, Any]) -> dict[str, Any]:
    acts = body.get("actions")
    if not isinstance(acts, list) or not acts or not isinstance(acts[0], dict):
        raise MalformedPayload("block_actions without actions")
    return acts[0]


def clicked_at(action: dict[str, Any] | None = None) -> datetime:
    """Slack's action_ts when there is one (a click), else now (a modal submission)."""
    raw = (action or {}).get("action_ts")
    try:
        return datetime.fromtimestamp(float(raw), UTC) if raw else datetime.now(UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def response_url(body: dict[str, Any]) -> str | None:
    url = body.get("response_url")
    if isinstance(url, str) and url:
        return url
    urls = body.get("response_urls") or []
    return urls[0].get("response_url") if urls and isinstance(urls[0], dict) else None


def source_ref(body: dict[str, Any], action: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where the click happened, kept with the event for audits."""
    container = body.get("container") or {}
    ref = {
        "channel": (body.get("channel") or {}).get("id") or container.get("channel_id"),
        "message_ts": container.get("message_ts"),
        "ephemeral": bool(container.get("is_ephemeral")),
        "action_ts": (action or {}).get("action_ts"),
        "view_id": (body.get("view") or {}).get("id"),
    }
    return {k: v for k, v in ref.items() if v not in (None, False)}


def state_values(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    view = body.get("view") or {}
    values = (view.get("state") or {}).get("values") or {}
    if not isinstance(values, dict):
        raise MalformedPayload("the view's state is not an object")
    return values


def input_value(values: dict[str, dict[str, Any]], block_id: str) -> Any:
    """The value of the single element in an input block, in whichever shape it has."""
    element = next(iter((values.get(block_id) or {}).values()), None)
    if not isinstance(element, dict):
        return None
    kind = element.get("type")
    if kind in ("static_select", "external_select"):
        return (element.get("selected_option") or {}).get("value")
    if kind == "checkboxes":
        return [o.get("value") for o in element.get("selected_options") or []]
    if kind == "multi_users_select":
        return element.get("selected_users") or []
    if kind == "channels_select":
        return element.get("selected_channel")
    if kind == "conversations_select":
        return element.get("selected_conversation")
    return element.get("value")
