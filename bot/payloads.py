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


def request_key(body: dict[str, Any]) -> str:
    """The same for a request and Slack's retries of it, different for each click or command:
    the user with the click's action_ts, else the trigger_id Slack sends with it."""
    acts = body.get("actions")
    action = acts[0] if isinstance(acts, list) and acts and isinstance(acts[0], dict) else {}
    stamp = action.get("action_ts") or body.get("trigger_id")
    if not isinstance(stamp, str) or not stamp:
        raise MalformedPayload("the request carries neither an action_ts nor a trigger_id")
    return f"{user_id(body)}:{stamp}"


def clicked_at(action: dict[str, Any] | None = None) -> datetime:
    """Slack's action_ts when there is one (a click), else now (a modal submission)."""
    raw = _object(action).get("action_ts")
    try:
        return datetime.fromtimestamp(float(raw), UTC) if raw else datetime.now(UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def response_url(body: dict[str, Any]) -> str | None:
    url = body.get("response_url")
    if isinstance(url, str) and url:
        return url
    urls = body.get("response_urls")
    first = urls[0] if isinstance(urls, list) and urls else None
    found = first.get("response_url") if isinstance(first, dict) else None
    return found if isinstance(found, str) and found else None


def source_ref(body: dict[str, Any], action: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where the click happened, kept with the event for audits (only what is well formed)."""
    container = _object(body.get("container"))
    ref = {
        "channel": _object(body.get("channel")).get("id") or container.get("channel_id"),
        "message_ts": container.get("message_ts"),
        "ephemeral": container.get("is_ephemeral") is True,
        "action_ts": _object(action).get("action_ts"),
        "view_id": _object(body.get("view")).get("id"),
    }
    return {k: v for k, v in ref.items() if (isinstance(v, str) and v) or v is True}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def state_values(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    view = _object(body.get("view"))
    values = _object(view.get("state")).get("values") or {}
    if not isinstance(values, dict):
        raise MalformedPayload("the view's state is not an object")
    return values


def input_value(values: dict[str, dict[str, Any]], block_id: str) -> Any:
    """The value of the single element in an input block, in whichever shape it has; None
    (or an empty list) when the element is missing or not in the shape Slack sends."""
    element = next(iter(_object(values.get(block_id)).values()), None)
    if not isinstance(element, dict):
        return None
    kind = element.get("type")
    if kind in ("static_select", "external_select"):
        return _text(_object(element.get("selected_option")).get("value"))
    if kind == "checkboxes":
        options = element.get("selected_options")
        found = [_object(o).get("value") for o in options] if isinstance(options, list) else []
        return [v for v in found if isinstance(v, str)]
    if kind == "multi_users_select":
        users = element.get("selected_users")
        return [u for u in users if isinstance(u, str)] if isinstance(users, list) else []
    if kind == "channels_select":
        return _text(element.get("selected_channel"))
    if kind == "conversations_select":
        return _text(element.get("selected_conversation"))
    return _text(element.get("value"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
