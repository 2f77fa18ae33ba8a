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
from zenpy.lib.endpoint import BaseEndpoint, Url
from zenpy.lib.exception import APIException, RecordNotFoundException, ZenpyException

from connectors import exceptions
from rag import links

P = ParamSpec("P")
R = TypeVar("R")

# Zendesk's caps: a list page (page[size] or per_page) and show_many's ids hold at most 100,
# a page of the incremental export at most 1,000
LIST_PAGE_MAX, EXPORT_PAGE_MAX = 100, 1000


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
    page_size: int = 100  # every page read: the export's per_page, lists' page[size]


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
    go to a local sandbox or proxy that answers plain http, and a brand's host
    (``<brand>.<domain>``, which does not resolve locally) goes to the configured address with
    its own ``Host`` header, from which the sandbox picks the brand's Help Center."""

    def __init__(self, config: ZendeskConfig, *, plain_http: bool) -> None:
        super().__init__()
        self.plain_http = plain_http
        self._local_host = urlsplit(config.base_url or "").netloc
        self._brand_suffix = "." + self._local_host.split(".", 1)[-1]
        adapter = HTTPAdapter(max_retries=retry_policy(config))
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.plain_http and url.startswith("https://"):
            url = "http://" + url[len("https://") :]
        return super().request(method, url, *args, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """A brand host's request goes out to the local address; the answer keeps the brand's
        URL, since Zenpy reads only answers from the host it called."""
        url = request.url or ""
        host = urlsplit(url).netloc
        if not (self.plain_http and host != self._local_host and host.endswith(self._brand_suffix)):
            return super().send(request, **kwargs)
        request.url = urlsplit(url)._replace(netloc=self._local_host).geturl()
        request.headers["Host"] = host
        response = super().send(request, **kwargs)
        response.url = request.url = url
        return response


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


def zendesk_says(exc: APIException) -> str:
    """Zendesk's own words in an error answer: its ``error`` (a code, or a title and message),
    ``description`` and ``details`` per field, so an admin reads the reason, not a JSON dump."""
    try:
        body = exc.response.json()  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return str(exc)
    if not isinstance(body, dict):
        return str(exc)
    error = body.get("error")
    said = [error.get("title"), error.get("message")] if isinstance(error, dict) else [error]
    said += [body.get(key) for key in ("title", "message", "description")]
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    for name, problems in details.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            text = problem.get("description") if isinstance(problem, dict) else problem
            said.append(f"{name}: {text}")
    return "; ".join(str(s) for s in said if s) or str(exc)


@contextlib.contextmanager
def _translating() -> Iterator[None]:
    """Zenpy's and requests' errors, raised inside the block, in our vocabulary."""
    try:
        yield
    except RecordNotFoundException as exc:
        raise exceptions.ZendeskNotFound(f"Zendesk: not found ({zendesk_says(exc)})") from exc
    except APIException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise exceptions.ZendeskAuthFailed(
                f"Zendesk refused the credentials ({status}: {zendesk_says(exc)}; check"
                " AITL_ZENDESK_EMAIL and the API token)"
            ) from exc
        if status == 404:
            raise exceptions.ZendeskNotFound(f"Zendesk: not found ({status})") from exc
        if status in (400, 422):
            raise exceptions.ZendeskRefused(
                f"Zendesk refused the request ({status}): {zendesk_says(exc)}"[:1000]
            ) from exc
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


class _ExportCursorEndpoint(BaseEndpoint):
    """A page of the cursor export after its first, built with Zenpy's ``Url``: Zenpy's own
    endpoint for it drops ``per_page``, and Zendesk then answers with its default of 1,000."""

    def __call__(self, cursor: str, per_page: int, **_zenpy_extras: Any) -> Url:
        return Url(self.endpoint, params={"cursor": cursor, "per_page": per_page})


EXPORT_AFTER_CURSOR = _ExportCursorEndpoint("incremental/tickets/cursor.json")


class ZendeskClient:
    def __init__(self, config: ZendeskConfig, *, brand_subdomain: str | None = None) -> None:
        """The account at its own host or, with ``brand_subdomain``, at a brand's host (each
        brand's Help Center answers there)."""
        domain, subdomain = "zendesk.com", config.subdomain
        if config.base_url:
            subdomain, domain = _zenpy_host(config.base_url)
        if not subdomain:
            raise exceptions.NotConnected()
        plain = bool(config.base_url and config.base_url.startswith("http://"))
        session = _ZendeskSession(config, plain_http=plain)
        self._session, self._timeout_s = session, config.timeout_s  # Zenpy adds the auth
        self._config, self.subdomain = config, brand_subdomain or subdomain
        self.base_url = (config.base_url or f"https://{subdomain}.{domain}").rstrip("/")
        if self.subdomain != subdomain:
            scheme = "http" if plain else "https"
            self.base_url, subdomain = f"{scheme}://{self.subdomain}.{domain}", self.subdomain
        self.page_size = min(config.page_size, EXPORT_PAGE_MAX)
        # a list's page[size] (and a show_many batch): the configured size within Zendesk's cap
        self.list_page_size = min(config.page_size, LIST_PAGE_MAX)
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
        """All the ticket's comments, paged at the list page size (Zenpy's ``comments`` takes
        no size, so its endpoint is queried with one)."""
        tickets_api = self._zenpy.tickets
        found = tickets_api._query_zendesk(
            tickets_api.endpoint.comments,
            "comment",
            id=ticket_id,
            include_inline_images="false",
            cursor_pagination=self.list_page_size,
        )
        return [c.to_dict() for c in found]

    @_translated
    def users(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """By id, through show_many in batches of the list page size (Zendesk takes 100)."""
        ids = sorted({i for i in ids if i})
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), self.list_page_size):
            batch = ids[start : start + self.list_page_size]
            found |= {u.id: u.to_dict() for u in self._zenpy.users(ids=batch)}
        return found

    @_translated
    def export_page(
        self,
        *,
        cursor: str | None = None,
        start_time: int | None = None,
        per_page: int | None = None,
    ) -> ExportPage:
        """One page of the cursor incremental export, so the caller stores every cursor; every
        page, the first and those after a cursor, asks for ``per_page`` (default: page_size)."""
        per_page = min(per_page or self.page_size, EXPORT_PAGE_MAX)
        if cursor:
            page = self._zenpy.tickets._query_zendesk(
                EXPORT_AFTER_CURSOR, "ticket", cursor=cursor, per_page=per_page
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
        """Post a comment and return its id (read from the update's audit). A body with
        Markdown links goes as ``html_body`` so the customer gets working links."""
        comment = (
            Comment(html_body=links.to_html(body), public=public)
            if links.has_links(body)
            else Comment(body=body, public=public)
        )
        result = self._zenpy.tickets.update(Ticket(id=ticket_id, comment=comment))
        for event in getattr(result.audit, "events", None) or []:
            event = event if isinstance(event, dict) else event.to_dict()
            if event.get("type") == "Comment":
                return int(event["id"])
        raise exceptions.ZendeskUnavailable(f"ticket {ticket_id}: update returned no comment")

    @_translated
    def articles(self) -> Iterator[dict[str, Any]]:
        for article in self._zenpy.help_center.articles(cursor_pagination=self.list_page_size):
            yield article.to_dict()

    @_translated
    def section_articles(self, section_id: int) -> list[dict[str, Any]]:
        """The section's articles, drafts included (an agent's token sees drafts). Zenpy's
        ``sections.articles`` takes no page size, so its endpoint is queried with one."""
        sections_api = self._zenpy.help_center.sections
        found = sections_api._query_zendesk(
            sections_api.endpoint.articles,
            "article",
            id=section_id,
            locale="en-us",
            cursor_pagination=self.list_page_size,
        )
        return [a.to_dict() for a in found]

    @_translated
    def sections(self) -> dict[int, dict[str, Any]]:
        found = self._zenpy.help_center.sections(cursor_pagination=self.list_page_size)
        return {s.id: s.to_dict() for s in found}

    @_translated
    def categories(self) -> dict[int, dict[str, Any]]:
        found = self._zenpy.help_center.categories(cursor_pagination=self.list_page_size)
        return {c.id: c.to_dict() for c in found}

    @_translated
    def macros(self) -> list[dict[str, Any]]:
        found = self._zenpy.macros(active=True, cursor_pagination=self.list_page_size)
        return [m.to_dict() for m in found]

    @_translated
    def create_article_draft(
        self,
        section_id: int,
        title: str,
        body_html: str,
        *,
        permission_group_id: int,
        user_segment_id: int,
    ) -> dict[str, Any]:
        """An unpublished article: Guide refuses one without a permission group (who may edit
        it) and takes the user segment (who may read it once published)."""
        article = Article(
            title=title,
            body=body_html,
            draft=True,
            locale="en-us",
            permission_group_id=permission_group_id,
            user_segment_id=user_segment_id,
        )
        return self._zenpy.help_center.articles.create(
            section=section_id, article=article
        ).to_dict()

    # --- brands and who may read or edit Help Center content ------------------------------

    @_translated
    def brands(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self._zenpy.brands(cursor_pagination=self.list_page_size)]

    def for_brand(self, subdomain: str) -> ZendeskClient:
        """This account read at a brand's host, where that brand's Help Center answers."""
        if subdomain == self.subdomain:
            return self
        return ZendeskClient(self._config, brand_subdomain=subdomain)

    @_translated
    def user_segments(self) -> dict[int, dict[str, Any]]:
        found = self._zenpy.help_center.user_segments(cursor_pagination=self.list_page_size)
        return {s.id: s.to_dict() for s in found}

    @_translated
    def permission_groups(self) -> list[dict[str, Any]]:
        """In the order Zendesk lists them (the first is the drafts' default)."""
        found = self._zenpy.help_center.permission_groups(cursor_pagination=self.list_page_size)
        return [g.to_dict() for g in found]

    @_translated
    def help_center_locales(self) -> tuple[list[str], str]:
        """The Help Center's locales and its default one (Zenpy has no call for it)."""
        api = self._zenpy.help_center
        answer = api._get(api._build_url(Url("help_center/locales.json")), raw_response=True)
        data = answer.json()
        default = str(data.get("default_locale") or "en-us").lower()
        locales = [str(locale).lower() for locale in data.get("locales") or []]
        return (locales or [default]), default

    @_translated
    def locale_articles(self, locale: str) -> Iterator[dict[str, Any]]:
        """The articles in one locale (each translation as its own article), paged at the
        list page size; Zenpy's article listing takes no locale."""
        api = self._zenpy.help_center.articles
        params = {"page[size]": self.list_page_size}
        url = api._build_url(Url(f"help_center/{locale}/articles.json", params=params))
        for article in api._get(url):
            yield article.to_dict()

    @_translated
    def download_attachment(self, url: str, *, max_bytes: int) -> bytes:
        """An attachment's file (its ``content_url``), at most ``max_bytes``. Credentials go
        only to the account's own host: Zendesk warns a content_url may be hosted elsewhere
        (and requests drops them on a redirect to another host)."""
        own_host = urlsplit(url).netloc == urlsplit(self.base_url).netloc
        getter = self._session.get if own_host else requests.get
        with getter(url, timeout=self._timeout_s, stream=True) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise exceptions.ConnectorError(f"{declared} bytes, over the {max_bytes} cap")
            data = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                data += chunk
                if len(data) > max_bytes:
                    raise exceptions.ConnectorError(f"over the {max_bytes} bytes cap")
            return bytes(data)

    @property
    def zenpy(self) -> Zenpy:
        """For the set-up module, which needs the webhook and trigger APIs."""
        return self._zenpy
