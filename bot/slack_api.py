"""The boundary to Slack's Web API: one client per process, and Slack's errors in our terms.

Rate limits are retried inside the call (``RateLimitErrorRetryHandler`` honours Retry-After)
a few times; past that the caller's job fails with SlackUnavailable and the queue retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from aitl.settings import Settings
from bot.exceptions import SlackRefused, SlackUnavailable

log = logging.getLogger(__name__)
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"}
)


def web_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RateLimitErrorRetryHandler(max_retry_count=settings.slack_retry_on_ratelimit),
        ],
    )


def call(method: Callable[..., SlackResponse], **kwargs: Any) -> SlackResponse:
    """Call a WebClient method; SlackUnavailable is worth retrying, SlackRefused is not."""
    name = getattr(method, "__name__", "slack")
    try:
        return method(**kwargs)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        status = exc.response.status_code if exc.response is not None else 0
        if status == 429 or status >= 500 or error in RETRYABLE_ERRORS:
            raise SlackUnavailable(f"Slack {name}: {error or status}") from exc
        raise SlackRefused(name, error or str(status)) from exc
    except SlackClientError as exc:
        raise SlackUnavailable(f"Slack {name}: {exc}") from exc
    except OSError as exc:
        raise SlackUnavailable(f"Slack {name}: {exc}") from exc


def open_modal(client: WebClient, body: dict[str, Any], view: Any) -> bool:
    """Open a modal on the click's trigger (valid for 3 s); a failure is logged, not raised."""
    try:
        call(client.views_open, trigger_id=body.get("trigger_id"), view=view.to_dict())
    except (SlackUnavailable, SlackRefused) as exc:
        log.warning("could not open the %s modal: %s", getattr(view, "callback_id", ""), exc)
        return False
    return True
