"""The boundary to Slack's Web API: one client per process, and Slack's errors in our terms.

Rate limits are retried inside the call (``RateLimitErrorRetryHandler`` honours Retry-After)
a few times; past that the caller's job fails with SlackUnavailable and the queue retries it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from aitl.settings import Settings
from bot.exceptions import SlackRefused, SlackUnavailable

T = TypeVar("T")
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
