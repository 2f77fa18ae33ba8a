"""The Zendesk API through Zenpy, translated into plain dicts and our own errors.

Nothing else in the product imports Zenpy: callers handle one vocabulary of errors
(`connectors.exceptions`) and never see a Zenpy object.

Retries inside a call are urllib3's, on the session Zenpy uses (:class:`ZendeskRetry`): a
429 is retried for any method after its Retry-After (capped), since Zendesk did nothing;
timeouts, dropped connections and 5xx only for reads, since a write may have landed (the
write-back checks for its comment before it posts again). Past the budget the call fails with
ZendeskUnavailable and the job queue retries it later.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.api_objects.help_centre_objects import Article
from zenpy.lib.exception import APIException, RecordNotFoundException, ZenpyException

from connectors import exceptions

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ZendeskConfig:
    subdomain: str | None
    base_url: str | None
    email: str
    api_token: str
    timeout_s: float
    rate_limit_budget_s: int = 120
    retries: int = 3
    retry_after_max_s: float = 60.0
    retry_backoff_s: float = 0.5


@dataclass(frozen=True)
class ExportPage:
    tickets: list[dict[str, Any]]
    after_cursor: str | None
    end_of_stream: bool


class ZendeskRetry(Retry):
    """urllib3's retry with one change: a 429 is retried whatever the method, since Zendesk
    refused the request before doing anything."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429:
            return bool(self.total)
        return super().is_retry(method, status_code, has_retry_after)


def retry_policy(config: ZendeskConfig) -> ZendeskRetry:
    return ZendeskRetry(
        total=config.retries,
        allowed_methods=frozenset({"GET"}),  # timeouts and 5xx: only reads are repeated
        status_forcelist=frozenset({500, 502, 503, 504}),
        backoff_factor=config.retry_backoff_s,
        respect_retry_after_header=True,
        retry_after_max=int(config.retry_after_max_s),
        raise_on_status=True,  # out of retries: an error, never the 429 for Zenpy to wait on
    )


class _ZendeskSession(requests.Session):
    """Retries per :func:`retry_policy`; with ``plain_http`` the https:// URLs Zenpy builds
    go to a local sandbox or proxy that answers plain http."""

    def __init__(self, config: ZendeskConfig, *, plain_http: bool) -> None:
        super().__init__()
        self.plain_http = plain_http
        adapter = HTTPAdapter(max_retries=retry_policy(config))
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.plain_http and url.startswith("https://"):
            url = "http://" + url[len("https://") :]
        return super().request(method, url, *args, **kwargs)


def _zenpy_host(base_url: str) -> tuple[str, str]:
    """Zenpy addresses ``<subdomain>.<domain>`` and parses only answers from that host, so a
    base URL's host is split at its first dot (``127.0.0.1:8000`` → ``127`` + ``0.0.1:8000``)."""
    host = urlsplit(base_url).netloc
    if "." not in host:
        raise exceptions.NotConnected(
            f"AITL_ZENDESK_BASE_URL {base_url!r}: use a host with a dot (127.0.0.1, not localhost)"
        )
    subdomain, domain = host.split(".", 1)
    return subdomain, domain


@contextlib.contextmanager
def _translating() -> Iterator[None]:
    """Zenpy's and requests' errors, raised inside the block, in our vocabulary."""
    try:
        yield
    except RecordNotFoundException as exc:
        raise exceptions.ZendeskNotFound(f"Zendesk: not found ({exc})") from exc
    except APIException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise exceptions.ZendeskAuthFailed(
                "Zendesk refused the credentials (check AITL_ZENDESK_EMAIL and the API token)"
            ) from exc
        if status == 404:
            raise exceptions.ZendeskNotFound(f"Zendesk: not found ({status})") from exc
        raise exceptions.ZendeskUnavailable(f"Zendesk answered {status}: {exc}"[:500]) from exc
    except (requests.RequestException, ZenpyException) as exc:
        raise exceptions.ZendeskUnavailable(
            f"Zendesk call failed: {type(exc).__name__}: {exc}"[:500]
        ) from exc


def _translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate errors of a call; of a generator, errors met while it is iterated too (its
    later pages are fetched then, after the call has returned)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def iterating(*args: P.args, **kwargs: P.kwargs) -> Any:
            with _translating():
                yield from fn(*args, **kwargs)

        return iterating  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _translating():
            return fn(*args, **kwargs)

    return wrapper


class ZendeskClient:
    def __init__(self, config: ZendeskConfig) -> None:
        domain, subdomain = "zendesk.com", config.subdomain
        if config.base_url:
            subdomain, domain = _zenpy_host(config.base_url)
        if not subdomain:
            raise exceptions.NotConnected()
        plain = bool(config.base_url and config.base_url.startswith("http://"))
        session = _ZendeskSession(config, plain_http=plain)
        self.base_url = (config.base_url or f"https://{subdomain}.{domain}").rstrip("/")
        self._zenpy = Zenpy(
            subdomain=subdomain,
            domain=domain,
            email=config.email,
            token=config.api_token,
            timeout=config.timeout_s,
            session=session,
            ratelimit_budget=config.rate_limit_budget_s,
        )

    def ticket_url(self, ticket_id: int) -> str:
        return f"{self.base_url}/agent/tickets/{ticket_id}"

    @_translated
    def me(self) -> dict[str, Any]:
        return self._zenpy.users.me().to_dict()

    @_translated
    def ticket(self, ticket_id: int) -> dict[str, Any]:
        return self._zenpy.tickets(id=ticket_id).to_dict()

    @_translated
    def comments(self, ticket_id: int) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self._zenpy.tickets.comments(ticket=ticket_id)]

    @_translated
    def users(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        ids = sorted({i for i in ids if i})
        if not ids:
            return {}
        return {u.id: u.to_dict() for u in self._zenpy.users(ids=ids)}

    @_translated
    def export_page(
        self, *, cursor: str | None = None, start_time: int | None = None, per_page: int = 100
    ) -> ExportPage:
        """One page of the cursor incremental export, so the caller stores every cursor."""
        if cursor:
            page = self._zenpy.tickets.incremental(
                cursor=cursor, paginate_by_time=False, per_page=per_page
            )
        else:
            page = self._zenpy.tickets.incremental(
                start_time=start_time or 0, paginate_by_time=False, per_page=per_page
            )
        return ExportPage(
            tickets=[t.to_dict() for t in page.values or []],
            after_cursor=getattr(page, "after_cursor", None),
            end_of_stream=bool(getattr(page, "end_of_stream", True)),
        )

    @_translated
    def add_comment(self, ticket_id: int, body: str, *, public: bool) -> int:
        """Post a comment and return its id (read from the update's audit)."""
        result = self._zenpy.tickets.update(
            Ticket(id=ticket_id, comment=Comment(body=body, public=public))
        )
        for event in getattr(result.audit, "events", None) or []:
            event = event if isinstance(event, dict) else event.to_dict()
            if event.get("type") == "Comment":
                return int(event["id"])
        raise exceptions.ZendeskUnavailable(f"ticket {ticket_id}: update returned no comment")

    @_translated
    def articles(self) -> Iterator[dict[str, Any]]:
        for article in self._zenpy.help_center.articles():
            yield article.to_dict()

    @_translated
    def section_articles(self, section_id: int) -> list[dict[str, Any]]:
        """The section's articles, drafts included (an agent's token sees drafts)."""
        return [a.to_dict() for a in self._zenpy.help_center.sections.articles(section=section_id)]

    @_translated
    def sections(self) -> dict[int, dict[str, Any]]:
        return {s.id: s.to_dict() for s in self._zenpy.help_center.sections()}

    @_translated
    def categories(self) -> dict[int, dict[str, Any]]:
        return {c.id: c.to_dict() for c in self._zenpy.help_center.categories()}

    @_translated
    def macros(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self._zenpy.macros(active=True)]

    @_translated
    def create_article_draft(self, section_id: int, title: str, body_html: str) -> dict[str, Any]:
        article = Article(title=title, body=body_html, draft=True, locale="en-us")
        return self._zenpy.help_center.articles.create(
            section=section_id, article=article
        ).to_dict()

    @property
    def zenpy(self) -> Zenpy:
        """For the set-up module, which needs the webhook and trigger APIs."""
        return self._zenpy
