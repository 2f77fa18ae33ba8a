"""The boundary to Slack's Web API: one client per process, and Slack's errors in our terms.

Inside a call (slack_sdk retry handlers, bounded by settings):

- 429: waited out as Retry-After asks, when it asks for at most ``slack_retry_after_max_s``;
  past that, or past ``slack_retry_on_ratelimit`` tries, the call fails with SlackUnavailable
  and the job queue retries it later.
- 5xx, timeouts and dropped connections: retried (``slack_retry_on_server_error``), but only
  for methods that are safe to repeat.
- ``chat.postMessage`` is not: Slack may have posted before it answered 500 or before the
  answer was lost. Each post carries a key in its message metadata; after such a failure the
  channel or thread is read back, and the post is repeated only when the key is not there.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    HttpRequest,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryState,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.web import SlackResponse

from aitl.core.settings import Settings
from bot.exceptions import SlackRefused, SlackUnavailable

log = logging.getLogger(__name__)
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"}
)
SERVER_ERRORS = frozenset({500, 502, 503, 504})
# a second call may do the thing twice (post, open a modal on a consumed trigger, share a file)
NOT_REPEATABLE = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.scheduleMessage",
        "views.open",
        "views.push",
        "files.completeUploadExternal",
    }
)
UNGATED = frozenset({"auth.test"})  # how `aitl slack status` finds the app back
POST_EVENT = "aitl_post"  # the metadata event type that carries a post's key
LOOKBACK = 200  # messages read back to find a post


def web_client(settings: Settings, gate: Callable[[], None] | None = None) -> SlackClient:
    """The process's client; ``gate`` runs before every Web API call but auth.test, and
    raises to stop the call (the app uninstalled)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    retries = settings.slack_retry_on_server_error
    return SlackClient(
        gate=gate,
        token=token,
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout_s,  # type: ignore[arg-type]  (urllib takes a float)
        post_retries=retries,
        retry_handlers=[
            RepeatableConnectionErrorRetryHandler(max_retry_count=retries),
            BoundedRateLimitRetryHandler(
                max_retry_count=settings.slack_retry_on_ratelimit,
                max_wait_s=settings.slack_retry_after_max_s,
            ),
            RepeatableServerErrorRetryHandler(max_retry_count=retries),
        ],
    )


# --- retry handlers -----------------------------------------------------------------------


def _method(request: HttpRequest) -> str:
    return request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _repeatable(request: HttpRequest) -> bool:
    return _method(request) not in NOT_REPEATABLE


def retry_after_s(response: HttpResponse | None) -> float:
    """Slack's Retry-After in seconds; 1 when it is missing or unreadable."""
    for name, values in (response.headers if response is not None else {}).items():
        if name.lower() == "retry-after" and values:
            try:
                return float(values[0] if isinstance(values, list) else values)
            except ValueError:
                return 1.0
    return 1.0


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Waits out a 429 only when Retry-After is short; a long one is the job queue's to wait."""

    def __init__(self, max_retry_count: int, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        limited = super()._can_retry(state=state, request=request, response=response, error=error)
        return limited and retry_after_s(response) <= self.max_wait_s


class RepeatableServerErrorRetryHandler(ServerErrorRetryHandler):
    """5xx, retried only for methods that cannot do their work twice."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        failed = response is not None and response.status_code in SERVER_ERRORS
        return failed and _repeatable(request)


class RepeatableConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """Dropped connections and timeouts, retried only for methods safe to repeat: the request
    may have reached Slack before the connection broke."""

    def __init__(self, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.error_types_to_do_retries = [*self.error_types_to_do_retries, TimeoutError]

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        broken = super()._can_retry(state=state, request=request, response=response, error=error)
        return broken and _repeatable(request)


# --- posting once -------------------------------------------------------------------------


def post_metadata(key: str | None = None) -> dict[str, Any]:
    """Message metadata naming a post, so it can be found again; a random key by default."""
    return {"event_type": POST_EVENT, "event_payload": {"key": key or uuid.uuid4().hex}}


def _key_of(metadata: Any) -> str | None:
    if isinstance(metadata, dict) and metadata.get("event_type") == POST_EVENT:
        key = (metadata.get("event_payload") or {}).get("key")
        return str(key) if key else None
    return None


def _ambiguous(exc: Exception) -> bool:
    """Whether Slack may have posted although the call failed."""
    if isinstance(exc, SlackApiError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, OSError)


class SlackClient(WebClient):
    """A WebClient whose ``chat_postMessage`` posts once even when Slack fails ambiguously,
    and whose calls stop at ``gate`` while the app may not post."""

    def __init__(
        self,
        *args: Any,
        post_retries: int = 2,
        backoff_s: float = 0.5,
        gate: Callable[[], None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.post_retries = post_retries
        self.backoff_s = backoff_s
        self.gate = gate

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        if self.gate is not None and api_method not in UNGATED:
            self.gate()
        return super().api_call(api_method, **kwargs)

    def chat_postMessage(self, **kwargs: Any) -> SlackResponse:
        kwargs["metadata"] = kwargs.get("metadata") or post_metadata()
        key = _key_of(kwargs["metadata"])
        attempt = 0
        while True:
            try:
                return super().chat_postMessage(**kwargs)
            except (SlackApiError, OSError) as exc:
                if key is None or not _ambiguous(exc):
                    raise
                found = self._found_after(exc, kwargs, key)
                if found is not None:
                    return found
                if attempt >= self.post_retries:
                    raise
            attempt += 1
            time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def _found_after(self, exc: Exception, kwargs: dict[str, Any], key: str) -> Any:
        """The post if Slack made it; the original error when Slack cannot be read either."""
        try:
            found = self.find_post(str(kwargs.get("channel")), kwargs.get("thread_ts"), key)
        except (SlackApiError, OSError) as lookup:
            log.warning("Slack post %s failed (%s) and could not be checked: %s", key, exc, lookup)
            raise exc from lookup
        if found is not None:
            log.info("Slack post %s failed (%s) but was made: not posting again", key, exc)
        return found

    def find_post(self, channel: str, thread_ts: str | None, key: str) -> SlackResponse | None:
        """The recent message carrying ``key``, answered as chat.postMessage answers."""
        args = {"channel": channel, "limit": LOOKBACK, "include_all_metadata": True}
        if thread_ts:
            page = self.conversations_replies(ts=thread_ts, **args)
        else:
            page = self.conversations_history(**args)
        for message in page.get("messages") or []:
            if _key_of(message.get("metadata")) == key:
                data = {"ok": True, "channel": channel, "ts": message["ts"], "message": message}
                return SlackResponse(
                    client=self,
                    http_verb="POST",
                    api_url=f"{self.base_url}chat.postMessage",
                    req_args={},
                    data=data,
                    headers={},
                    status_code=200,
                )
        return None


# --- calls in our terms -------------------------------------------------------------------


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


def post_once(slack: WebClient, key: str, *, check_first: bool, **kwargs: Any) -> SlackResponse:
    """chat.postMessage carrying ``key``. A retried job passes ``check_first``: its last
    attempt may have posted before it failed, so the message is looked for before posting."""
    if check_first and isinstance(slack, SlackClient):
        channel, thread_ts = str(kwargs["channel"]), kwargs.get("thread_ts")
        found = call(slack.find_post, channel=channel, thread_ts=thread_ts, key=key)
        if found is not None:
            log.info("Slack post %s was made by an earlier attempt: not posting again", key)
            return found
    return call(slack.chat_postMessage, metadata=post_metadata(key), **kwargs)


def open_modal(client: WebClient, body: dict[str, Any], view: Any) -> bool:
    """Open a modal on the click's trigger (valid for 3 s); a failure is logged, not raised."""
    try:
        call(client.views_open, trigger_id=body.get("trigger_id"), view=view.to_dict())
    except (SlackUnavailable, SlackRefused) as exc:
        log.warning("could not open the %s modal: %s", getattr(view, "callback_id", ""), exc)
        return False
    return True


def direct_message(client: WebClient, user_id: str, text: str) -> SlackResponse:
    """A message from the app in its direct conversation with ``user_id``."""
    opened = call(client.conversations_open, users=user_id)
    return call(client.chat_postMessage, channel=opened["channel"]["id"], text=text)
