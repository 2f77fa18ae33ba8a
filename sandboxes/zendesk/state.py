"""The in-memory Zendesk account behind the local sandbox (``sandboxes.zendesk.server`` serves it).

Resources are kept as the JSON documents Zendesk's API returns (minus ``url`` fields, which
depend on the host the client used), so the HTTP layer only selects and paginates. Changes
made through the API and through the Python driving methods run the same code, so both
queue the same webhook events and both show up in the incremental export.

SandboxError
├── RecordNotFound
├── RecordInvalid
├── InvalidAttribute       (400, Help Center's shape: {"error": {"title", "message"}})
├── Forbidden              (403: the token may not read this brand's Help Center)
└── InvalidParameter
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import html
import itertools
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

from aitl.core.exceptions import AitlError
from sandboxes import faults
from sandboxes.faults import FaultLog

Json = dict[str, Any]

TICKET_CREATED = "zen:event-type:ticket.created"
COMMENT_ADDED = "zen:event-type:ticket.comment_added"
STATUS_CHANGED = "zen:event-type:ticket.status_changed"
EVENT_VERSION = "2022-11-06"
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = (None, "low", "normal", "high", "urgent")
# what PUT /tickets/{id} may change; Zendesk ignores read-only fields sent back to it
UPDATABLE = (
    "subject",
    "status",
    "priority",
    "type",
    "tags",
    "assignee_id",
    "group_id",
    "brand_id",
    "external_id",
    "due_at",
    "ticket_form_id",
)
TICKET_TYPES = (None, "problem", "incident", "question", "task")
# Zendesk's ids of a few locales (GET /api/v2/locales); others get none in the sandbox
LOCALE_IDS = {"en-US": 1, "es": 2, "de": 8, "fr": 16}
COMMENT_EVENT_FIELDS = (
    "id",
    "type",
    "author_id",
    "body",
    "html_body",
    "plain_body",
    "public",
    "attachments",
    "audit_id",
)
MAX_EXPORT_PAGE = 1000
# macros as real accounts write them (Zendesk placeholders are Liquid): placeholders a draft
# can fill from the ticket, a filter, a name only Zendesk knows, a tag block, and an HTML reply
# whose link is a placeholder; (title, reply text, whether it is comment_value_html)
PLACEHOLDER_MACROS: tuple[tuple[str, str, bool], ...] = (
    (
        "Refund issued",
        "Hi {{ticket.requester.first_name}}, the refund for request #{{ticket.id}} was issued "
        "today. Refunds reach the bank account within 5 to 10 business days. "
        "Kind regards, {{ current_user.name | capitalize }}",
        False,
    ),
    (
        "Refund to a business account",
        "Refunds for {{ticket.organization.name}} go back to the business account on file. "
        "A business account refund is issued as a credit note.",
        False,
    ),
    (
        "Urgent refund",
        "{% if ticket.priority == 'urgent' %}Your refund was escalated to the billing team."
        "{% endif %}\nRefund escalations are answered by the billing team within one day.",
        False,
    ),
    (
        "Refund survey",
        "<p>Hello {{ ticket.requester.name | default: 'there' }},</p><p>Your refund is on its "
        'way to the bank. Tell us how we did: <a href="{{satisfaction.rating_url}}">rate this '
        "reply</a>.</p>",
        True,
    ),
)
ID_BASES = {
    "ticket": 1,
    "user": 360000000001,
    "category": 4400000001,
    "brand": 360000100001,
    "user_segment": 360000200001,
    "permission_group": 360000300001,
}

# what load_recorded takes: a response's list key → its single key, and where each is kept
RECORDED_KINDS = {
    "tickets": "ticket",
    "users": "user",
    "comments": "comment",
    "articles": "article",
    "sections": "section",
    "categories": "category",
    "macros": "macro",
    "brands": "brand",
    "user_segments": "user_segment",
    "permission_groups": "permission_group",
}
RECORDED_STORES = {kind: f"_{kind}" for kind in RECORDED_KINDS if kind != "comments"}

TICKET_TEMPLATE: Json = {
    "external_id": None,
    "type": None,
    "subject": "",
    "raw_subject": "",
    "description": "",
    "priority": None,
    "status": "new",
    "recipient": None,
    "assignee_id": None,
    "organization_id": None,
    "group_id": None,
    "brand_id": None,
    "collaborator_ids": [],
    "follower_ids": [],
    "email_cc_ids": [],
    "problem_id": None,
    "has_incidents": False,
    "is_public": True,
    "due_at": None,
    "tags": [],
    "custom_fields": [],
    "satisfaction_rating": None,
    "sharing_agreement_ids": [],
    "fields": [],
    "followup_ids": [],
    "ticket_form_id": None,
    "allow_channelback": False,
    "allow_attachments": True,
    "from_messaging_channel": False,
}
ARTICLE_TEMPLATE: Json = {
    "comments_disabled": False,
    "draft": False,
    "promoted": False,
    "position": 0,
    "vote_sum": 0,
    "vote_count": 0,
    "outdated": False,
    "outdated_locales": [],
    "user_segment_id": None,
    "user_segment_ids": [],
    "permission_group_id": None,
    "content_tag_ids": [],
    "label_names": [],
    "body": "",
}
WEBHOOK_FIELDS = (
    "name",
    "status",
    "endpoint",
    "http_method",
    "request_format",
    "subscriptions",
    "description",
    "authentication",
)
TRIGGER_FIELDS = ("title", "active", "conditions", "actions", "description", "position")


class SandboxError(AitlError):
    """The Zendesk sandbox refused the request."""

    status_code = 400
    error = "InvalidRequest"


class RecordNotFound(SandboxError):
    """Not found"""

    status_code = 404
    error = "RecordNotFound"


class RecordInvalid(SandboxError):
    """Record validation errors"""

    status_code = 422
    error = "RecordInvalid"


class InvalidParameter(SandboxError):
    """A query parameter is missing or invalid."""

    error = "InvalidPaginationParameter"


class InvalidAttribute(SandboxError):
    """Invalid attribute"""

    error = "InvalidAttribute"

    def __init__(self, attribute: str, reason: str) -> None:
        super().__init__(f"You passed an invalid value for the {attribute} attribute. {reason}")


class Forbidden(SandboxError):
    """The token's agent may not read this (e.g. a brand's Help Center it is kept out of)."""

    status_code = 403
    error = "Forbidden"

    def __init__(self) -> None:
        super().__init__(
            "You do not have access to this page. Please contact the account owner of this"
            " help desk for further help."
        )


@dataclass
class Fault(faults.Fault):
    """An injected failure or delay for the next requests whose method and path match."""

    method: str
    pattern: re.Pattern[str]

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and self.pattern.search(path) is not None


@dataclass(frozen=True)
class RecordedRequest:
    """One API request the sandbox answered, for tests to assert what a client sent."""

    method: str
    path: str
    query: str
    status: int
    body: Any = None

    @property
    def params(self) -> dict[str, str]:
        """The query string decoded: ``page[size]``, not ``page%5Bsize%5D``."""
        return dict(parse_qsl(self.query, keep_blank_values=True))


@dataclass(frozen=True)
class ExportPage:
    """One page of the cursor-based incremental ticket export."""

    tickets: list[Json]
    after_cursor: str
    before_cursor: str | None
    end_of_stream: bool


def iso(moment: datetime) -> str:
    """Zendesk's timestamp format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(timestamp: str) -> int:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(moment.timestamp())


def html_to_text(markup: str) -> str:
    """Plain text of a comment's HTML, the way ``plain_body`` reads."""
    text = re.sub(r"<\s*(br|/p|/div|/li|/h[1-6])\b[^>]*>", "\n", markup, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_ANCHOR = re.compile(r"<a\b[^>]*?\bhref\s*=\s*[\"']([^\"']*)[\"'][^>]*>(.*?)</a\s*>", re.I | re.S)
_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']*)[\"'][^>]*>", re.I)


def html_to_markdown(markup: str) -> str:
    """``body`` of a comment posted as HTML: Zendesk keeps its links in Markdown there
    (``[text](url)``, the bare URL when that is the text, ``![](src)`` for an image), while
    ``plain_body`` has the link texts only."""

    def link(match: re.Match[str]) -> str:
        url, text = html.unescape(match.group(1)), html_to_text(match.group(2))
        return url if text in ("", url) else f"[{text}]({url})"

    markup = _IMAGE.sub(lambda m: html.escape(f"![]({html.unescape(m.group(1))})"), markup)
    return html_to_text(_ANCHOR.sub(lambda m: html.escape(link(m)), markup))


def text_to_html(text: str) -> str:
    paragraphs = [html.escape(p).replace("\n", "<br>") for p in text.split("\n\n")]
    inner = "".join(f'<p dir="auto">{p}</p>' for p in paragraphs)
    return f'<div class="zd-comment" dir="auto">{inner}</div>'


def encode_cursor(direction: Literal["after", "before"], position: int) -> str:
    """An opaque, URL-safe cursor (Zenpy puts cursors into query strings unescaped)."""
    return base64.urlsafe_b64encode(f"{direction}:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, position = raw.split(":")
        if direction in ("after", "before"):
            return direction, int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidParameter(f"invalid cursor: {cursor!r}")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


def _via(channel: str) -> Json:
    return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}


class SandboxState:
    """A thread-safe, in-memory Zendesk account: Support, Help Center, webhooks, triggers.

    Every public method takes the lock and returns copies, so callers on any thread (the
    HTTP server's, a test's, the webhook sender's) never see or cause half-made changes.
    """

    def __init__(
        self,
        *,
        agent_email: str = "agent@sandbox.example",
        api_token: str = "sandbox-token",
        agent_name: str = "Sandbox Agent",
        account_id: int = 10000001,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.agent_email = agent_email
        self.api_token = api_token
        self.account_id = account_id
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._counters: dict[str, itertools.count[int]] = {}
        self._seq = 0
        self._users: dict[int, Json] = {}
        self._tickets: dict[int, Json] = {}
        self._ticket_seq: dict[int, int] = {}
        self._comments: dict[int, list[Json]] = {}
        self._categories: dict[int, Json] = {}
        self._sections: dict[int, Json] = {}
        self._articles: dict[int, Json] = {}
        self._archived: set[int] = set()
        self._translations: dict[int, dict[str, Json]] = {}  # article id → locale → texts
        self._brands: dict[int, Json] = {}
        self._brand_of_category: dict[int, int] = {}  # sections and articles follow theirs
        self._forbidden_brands: set[int] = set()
        self._user_segments: dict[int, Json] = {}
        self._permission_groups: dict[int, Json] = {}
        self._macros: dict[int, Json] = {}
        self._uploads: dict[str, tuple[Json, bytes]] = {}  # token → (attachment, file)
        self._files: dict[str, tuple[Json, bytes]] = {}  # token → an attached file
        self._webhooks: dict[str, Json] = {}
        self._secrets: dict[str, str] = {}
        self._triggers: dict[int, Json] = {}
        self._log: FaultLog[Fault, RecordedRequest] = FaultLog(self._lock)
        self.agent = copy.deepcopy(self._add_user(agent_name, agent_email, "admin"))
        self.default_brand_id = self.add_brand("Sandbox", "sandbox", default=True)["id"]
        self.signed_in_segment_id, self.staff_segment_id = self._seed_user_segments()
        self.default_permission_group_id = self._seed_permission_group()
        self.default_section_id = self._seed_help_center()

    def _next_id(self, kind: str) -> int:
        counter = self._counters.setdefault(kind, itertools.count(ID_BASES.get(kind, 1000001)))
        return next(counter)

    def _now(self) -> str:
        return iso(self._clock())

    def _queue(self, envelope: Json, webhook_id: str) -> None:
        """Hand one webhook envelope to delivery; ``ZendeskSandbox`` sends it."""

    def authenticate(self, email: str, token: str) -> bool:
        expected = f"{self.agent_email}\0{self.api_token}".encode()
        return hmac.compare_digest(f"{email}\0{token}".encode(), expected)

    # --- users ----------------------------------------------------------------------------

    def _add_user(self, name: str, email: str, role: str, locale: str = "en-US") -> Json:
        now = self._now()
        user = {
            "id": self._next_id("user"),
            "name": name,
            "email": email,
            "role": role,
            "active": True,
            "verified": True,
            "suspended": False,
            "locale": locale,
            "locale_id": LOCALE_IDS.get(locale),
            "time_zone": "UTC",
            "organization_id": None,
            "tags": [],
            "created_at": now,
            "updated_at": now,
        }
        self._users[user["id"]] = user
        return user

    def ensure_user(self, email: str, name: str | None = None, locale: str = "en-US") -> Json:
        """The user with this email, created as an end user on first sight (as email does),
        in ``locale`` (Zendesk's: "en-US", "de", ...)."""
        with self._lock:
            for user in self._users.values():
                if user["email"].lower() == email.lower():
                    return copy.deepcopy(user)
            fallback = email.split("@")[0].replace(".", " ").title()
            return copy.deepcopy(self._add_user(name or fallback, email, "end-user", locale))

    def user(self, user_id: int) -> Json:
        with self._lock:
            if user_id not in self._users:
                raise RecordNotFound()
            return copy.deepcopy(self._users[user_id])

    def users(self, ids: Iterable[int]) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(self._users[i]) for i in ids if i in self._users]

    # --- tickets: the driving API ---------------------------------------------------------

    def create_ticket(
        self,
        subject: str,
        body: str,
        requester_email: str,
        *,
        requester_name: str | None = None,
        brand_id: int | None = None,
        group_id: int | None = None,
        tags: Iterable[str] = (),
        priority: str | None = None,
        ticket_type: str | None = None,
        ticket_form_id: int | None = None,
        channel: str = "email",
        requester_locale: str = "en-US",
        attachments: Iterable[str | Json] = (),
    ) -> Json:
        """A customer writes in (by email unless ``channel`` says): a new ticket whose first
        comment is theirs, with ``attachments`` (``upload`` tokens, or raw attachment JSON
        to replay what a real account sent)."""
        requester = self.ensure_user(requester_email, requester_name, requester_locale)
        fields = {"subject": subject, "brand_id": brand_id, "group_id": group_id}
        fields |= {"tags": list(tags), "priority": priority}
        fields |= {"type": ticket_type, "ticket_form_id": ticket_form_id}
        comment = {"body": body, "public": True, "uploads": list(attachments)}
        ticket, _ = self.open_ticket(fields, comment, requester["id"], channel=channel)
        return ticket

    def add_comment(
        self,
        ticket_id: int,
        body: str,
        public: bool = True,
        author: Literal["customer", "agent"] = "customer",
        attachments: Iterable[str | Json] = (),
    ) -> Json:
        """A reply from the requester (it reopens a pending ticket) or from the agent, with
        ``attachments`` as ``create_ticket`` takes them."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            author_id = ticket["requester_id"] if author == "customer" else self.agent["id"]
            changes: Json = {"comment": {"body": body, "public": public}}
            changes["comment"]["uploads"] = list(attachments)
            if author == "customer" and ticket["status"] in ("pending", "hold", "solved"):
                changes["status"] = "open"
            channel = "email" if author == "customer" else "web"
            self.update_ticket(ticket_id, changes, author_id, channel)
            return copy.deepcopy(self._comments[ticket_id][-1])

    def set_status(self, ticket_id: int, status: str) -> Json:
        ticket, _ = self.update_ticket(ticket_id, {"status": status}, self.agent["id"], "web")
        return ticket

    def ticket(self, ticket_id: int) -> Json:
        with self._lock:
            return copy.deepcopy(self._ticket(ticket_id))

    def tickets(self, ids: Iterable[int] | None = None) -> list[Json]:
        with self._lock:
            wanted = self._tickets if ids is None else [i for i in ids if i in self._tickets]
            return [copy.deepcopy(self._tickets[i]) for i in wanted]

    def comments(self, ticket_id: int) -> list[Json]:
        with self._lock:
            self._ticket(ticket_id)
            return copy.deepcopy(self._comments[ticket_id])

    # --- tickets: what the driving API and the HTTP API share -----------------------------

    def _ticket(self, ticket_id: int) -> Json:
        if ticket_id not in self._tickets:
            raise RecordNotFound()
        return self._tickets[ticket_id]

    def open_ticket(
        self, fields: Json, comment: Json, requester_id: int, channel: str = "api"
    ) -> tuple[Json, Json]:
        """Create a ticket whose first comment is the requester's (unless it names an
        ``author_id``); returns (ticket, audit) as ``POST /tickets`` does."""
        if not (comment.get("body") or comment.get("html_body")):
            raise RecordInvalid("Description: cannot be blank")
        with self._lock:
            for user_id in (requester_id, int(comment.get("author_id") or requester_id)):
                self._check_user(user_id)
            ticket = self._new_ticket(fields, requester_id, channel)
            audit = self._audit(ticket, requester_id, channel)
            first = self._append_comment(ticket, comment, audit, requester_id, channel)
            ticket["description"], ticket["is_public"] = first["plain_body"], first["public"]
            audit["events"] += [self._create_event(f, ticket[f]) for f in UPDATABLE if ticket[f]]
            self._touch(ticket)
            self._emit(TICKET_CREATED, ticket, first["author_id"], {})
            return copy.deepcopy(ticket), audit

    def _new_ticket(self, fields: Json, requester_id: int, channel: str) -> Json:
        self._check_fields(fields.get("status"), fields.get("priority"), fields.get("type"))
        now = self._now()
        ticket = copy.deepcopy(TICKET_TEMPLATE) | {
            "id": self._next_id("ticket"),
            "via": _via(channel),
            "requester_id": requester_id,
            "submitter_id": requester_id,
            "created_at": now,
        }
        ticket |= {k: v for k, v in fields.items() if k in UPDATABLE and v is not None}
        ticket["raw_subject"] = ticket["subject"]
        self._tickets[ticket["id"]] = ticket
        self._comments[ticket["id"]] = []
        return ticket

    def update_ticket(
        self, ticket_id: int, changes: Json, actor_id: int, channel: str = "api"
    ) -> tuple[Json, Json]:
        """Apply a ``PUT /tickets/{id}`` body: field changes plus an optional comment."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            if ticket["status"] == "closed":
                raise RecordInvalid("Status: closed prevents ticket update")
            self._check_fields(changes.get("status"), changes.get("priority"), changes.get("type"))
            audit = self._audit(ticket, actor_id, channel)
            if changes.get("comment"):
                self._append_comment(ticket, changes["comment"], audit, actor_id, channel)
            previous = ticket["status"]
            for name in (n for n in UPDATABLE if n in changes and changes[n] != ticket[n]):
                audit["events"].append(self._change_event(name, changes[name], ticket[name]))
                ticket[name] = changes[name]
            self._touch(ticket)
            if ticket["status"] != previous:
                event = {"current": _upper(ticket["status"]), "previous": _upper(previous)}
                self._emit(STATUS_CHANGED, ticket, actor_id, event)
            return copy.deepcopy(ticket), audit

    def _check_user(self, user_id: int) -> int:
        if user_id not in self._users:
            raise RecordInvalid(f"User: {user_id} does not exist")
        return user_id

    def _check_fields(
        self, status: str | None, priority: str | None, kind: str | None = None
    ) -> None:
        if kind not in TICKET_TYPES:
            raise RecordInvalid(f"Type: {kind} is not valid")
        if status is not None and status not in STATUSES:
            raise RecordInvalid(f"Status: {status} is not valid")
        if priority not in PRIORITIES:
            raise RecordInvalid(f"Priority: {priority} is not valid")

    def _touch(self, ticket: Json) -> None:
        """Move the ticket to the end of the export order, as any change does in Zendesk."""
        now = self._now()
        ticket["updated_at"], ticket["generated_timestamp"] = now, epoch(now)
        self._seq += 1
        self._ticket_seq[ticket["id"]] = self._seq

    def _audit(self, ticket: Json, author_id: int, channel: str) -> Json:
        return {
            "id": self._next_id("audit"),
            "ticket_id": ticket["id"],
            "created_at": self._now(),
            "author_id": author_id,
            "metadata": {"system": {}, "custom": {}},
            "via": _via(channel),
            "events": [],
        }

    def _create_event(self, field: str, value: Any) -> Json:
        return {"id": self._next_id("event"), "type": "Create", "field_name": field, "value": value}

    def _change_event(self, field: str, value: Any, previous: Any) -> Json:
        event = {"id": self._next_id("event"), "type": "Change", "field_name": field}
        return event | {"value": value, "previous_value": previous}

    def _append_comment(
        self, ticket: Json, spec: Json, audit: Json, actor_id: int, channel: str
    ) -> Json:
        comment = self._new_comment(spec, actor_id, channel) | {"audit_id": audit["id"]}
        self._comments[ticket["id"]].append(comment)
        audit["events"].insert(0, {k: comment[k] for k in COMMENT_EVENT_FIELDS})
        if len(self._comments[ticket["id"]]) > 1:  # the first comment is the ticket's creation
            self._emit(COMMENT_ADDED, ticket, comment["author_id"], self._comment_event(comment))
        return comment

    def _new_comment(self, spec: Json, actor_id: int, channel: str) -> Json:
        author_id = self._check_user(int(spec.get("author_id") or actor_id))
        markup = spec.get("html_body") or text_to_html(spec.get("body") or "")
        text = html_to_text(markup) if spec.get("html_body") else (spec.get("body") or "")
        body = html_to_markdown(markup) if spec.get("html_body") else text
        return {
            "id": self._next_id("event"),  # a comment is its audit's Comment event
            "type": "Comment",
            "author_id": author_id,
            "body": body,
            "html_body": markup,
            "plain_body": text,
            "public": bool(spec.get("public", True)),
            "attachments": self._take_uploads(spec.get("uploads") or []),
            "via": _via(channel),
            "metadata": {"system": {}, "custom": {}},
            "created_at": self._now(),
        }

    def _comment_event(self, comment: Json) -> Json:
        author = self._users[comment["author_id"]]
        staff = author["role"] != "end-user"
        return {
            "comment": {
                "id": str(comment["id"]),
                "body": comment["plain_body"],
                "is_public": comment["public"],
                "author": {"id": str(author["id"]), "is_staff": staff, "name": author["name"]},
            }
        }

    # --- attachments: uploads, then a comment that names their tokens --------------------

    def upload(
        self,
        file_name: str,
        data: bytes,
        content_type: str | None = "application/octet-stream",
        *,
        inline: bool = False,
    ) -> str:
        """``POST /uploads``: keep a file until a comment takes it; returns its token."""
        if not file_name:
            raise InvalidParameter("filename is required")
        with self._lock:
            token = secrets.token_urlsafe(18)
            attachment = {
                "id": self._next_id("attachment"),
                "file_name": file_name,
                # made absolute (with the host the client called) when served
                "content_url": f"/attachments/token/{token}/?name={quote(file_name)}",
                "mapped_content_url": f"/attachments/token/{token}/?name={quote(file_name)}",
                "content_type": content_type,
                "size": len(data),
                "width": None,
                "height": None,
                "inline": inline,
                "deleted": False,
                "malware_access_override": False,
                "malware_scan_result": "malware_not_found",
                "thumbnails": [],
            }
            self._uploads[token] = (attachment, data)
            return token

    def upload_json(self, token: str) -> Json:
        """The attachment an upload will become, as ``POST /uploads`` answers it."""
        with self._lock:
            if token not in self._uploads:
                raise RecordNotFound()
            return copy.deepcopy(self._uploads[token][0])

    def _take_uploads(self, uploads: list[Any]) -> list[Any]:
        """A comment's attachments: each token's upload (used up, as in Zendesk), or raw
        attachment JSON given by the driving API (any shape a real account may send)."""
        taken = []
        for upload in uploads:
            if not isinstance(upload, str):
                taken.append(copy.deepcopy(upload))
                continue
            if upload not in self._uploads:
                raise RecordInvalid(f"Uploads: {upload} is not a valid upload token")
            attachment, data = self._uploads.pop(upload)
            self._files[upload] = (attachment, data)
            taken.append(copy.deepcopy(attachment))
        return taken

    def attachment_file(self, token: str) -> tuple[Json, bytes]:
        """An attached file by the token in its ``content_url``."""
        with self._lock:
            if token not in self._files:
                raise RecordNotFound()
            attachment, data = self._files[token]
            return copy.deepcopy(attachment), data

    # --- incremental export ---------------------------------------------------------------

    def export_tickets(
        self, *, start_time: int | None = None, cursor: str | None = None, per_page: int = 1000
    ) -> ExportPage:
        """A page of the cursor-based incremental export, in the order tickets last changed.

        The cursor holds a position in the change sequence: that orders like
        ``(updated_at, id)`` but never loses a ticket changed twice within one second.
        """
        per_page = max(1, min(per_page, MAX_EXPORT_PAGE))
        with self._lock:
            ordered = sorted(self._tickets.values(), key=lambda t: self._ticket_seq[t["id"]])
            if cursor is not None:
                return self._page_from_cursor(ordered, *decode_cursor(cursor), per_page)
            if start_time is None:
                raise InvalidParameter("start_time or cursor is required")
            rows = [t for t in ordered if t["generated_timestamp"] >= start_time]
            return self._after_page(rows, per_page, fallback=self._seq)

    def _page_from_cursor(
        self, ordered: list[Json], direction: str, position: int, per_page: int
    ) -> ExportPage:
        if direction == "after":
            rows = [t for t in ordered if self._ticket_seq[t["id"]] > position]
            return self._after_page(rows, per_page, fallback=position)
        page = [t for t in ordered if self._ticket_seq[t["id"]] < position][-per_page:]
        after = encode_cursor("after", self._ticket_seq[page[-1]["id"]] if page else 0)
        return ExportPage(copy.deepcopy(page), after, self._before(page), end_of_stream=False)

    def _after_page(self, rows: list[Json], per_page: int, fallback: int) -> ExportPage:
        page = rows[:per_page]
        after = encode_cursor("after", self._ticket_seq[page[-1]["id"]] if page else fallback)
        end = len(rows) <= per_page
        return ExportPage(copy.deepcopy(page), after, self._before(page), end_of_stream=end)

    def _before(self, page: list[Json]) -> str | None:
        return encode_cursor("before", self._ticket_seq[page[0]["id"]]) if page else None

    # --- webhook events -------------------------------------------------------------------

    def _emit(self, event_type: str, ticket: Json, actor_id: int, event: Json) -> None:
        """Queue one event-subscription envelope per active webhook subscribed to the type."""
        targets = [
            w["id"]
            for w in self._webhooks.values()
            if w["status"] == "active" and event_type in w["subscriptions"]
        ]
        envelope = {
            "type": event_type,
            "account_id": self.account_id,
            "id": str(uuid.uuid4()),
            "subject": f"zen:ticket:{ticket['id']}",
            "time": self._now(),
            "zendesk_event_version": EVENT_VERSION,
            "detail": self._ticket_detail(ticket, actor_id),
            "event": event,
        }
        for webhook_id in targets:
            self._queue(envelope, webhook_id)

    def _ticket_detail(self, ticket: Json, actor_id: int) -> Json:
        """The ticket as event payloads carry it: ids as strings, enums upper-case."""
        ids = ("assignee_id", "brand_id", "group_id", "id", "organization_id", "requester_id")
        detail = {name: _str(ticket[name]) for name in (*ids, "submitter_id")}
        detail |= {
            "actor_id": _str(actor_id),
            "form_id": _str(ticket["ticket_form_id"]),
            "priority": _upper(ticket["priority"]),
            "status": _upper(ticket["status"]),
            "type": _upper(ticket["type"]),
            "tags": list(ticket["tags"]),
            "via": {"channel": ticket["via"]["channel"]},
            "custom_status": None,
        }
        copied = ("created_at", "updated_at", "description", "external_id", "is_public")
        detail |= {name: ticket[name] for name in (*copied, "subject")}
        return dict(sorted(detail.items()))

    def webhook_target(self, webhook_id: str) -> tuple[str, str] | None:
        """Where and with which secret to send a delivery now (the secret may be rotated)."""
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                return None
            return webhook["endpoint"], self._secrets[webhook_id]

    # --- faults and the request log -------------------------------------------------------

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        *,
        after_apply: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and Zendesk's error.
        Nothing changes, unless ``after_apply``: then the request takes effect first (a
        comment is added, then 500 comes back), which is how a 5xx can mislead."""
        pattern = re.compile(path_regex)
        self._log.add(
            Fault(
                method.upper(),
                pattern,
                remaining=times,
                status=status,
                retry_after=retry_after,
                after_apply=after_apply,
            )
        )

    def delay(
        self, method: str, path_regex: str, seconds: float, times: int = 1, after_apply: bool = True
    ) -> None:
        """Hold matching responses for ``seconds``. By default the change is applied first,
        so a client that times out has still written, which is how Zendesk fails."""
        pattern = re.compile(path_regex)
        self._log.add(
            Fault(
                method.upper(), pattern, remaining=times, seconds=seconds, after_apply=after_apply
            )
        )

    def clear_faults(self) -> None:
        """Forget every injected fault not used up yet: Zendesk has recovered."""
        self._log.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        return self._log.take(lambda fault: fault.matches(method.upper(), path))

    def record(self, request: RecordedRequest) -> None:
        self._log.record(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._log.calls()

    # --- brands: each has its own Help Center, served at the brand's host ------------------

    def add_brand(
        self,
        name: str,
        subdomain: str,
        *,
        default: bool = False,
        has_help_center: bool = True,
        help_center_state: str = "enabled",
    ) -> Json:
        """A brand (``brand_url`` is added when served: it depends on the host called)."""
        with self._lock:
            now = self._now()
            brand = {"id": self._next_id("brand"), "name": name, "subdomain": subdomain}
            brand |= {"active": True, "default": default, "is_deleted": False}
            brand |= {"has_help_center": has_help_center, "help_center_state": help_center_state}
            brand |= {"host_mapping": None, "logo": None, "ticket_form_ids": []}
            brand |= {"signature_template": "{{agent.signature}}"}
            brand |= {"created_at": now, "updated_at": now}
            self._brands[brand["id"]] = brand
            return copy.deepcopy(brand)

    def brands(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._brands.values()))

    def brand(self, brand_id: int) -> Json:
        with self._lock:
            if brand_id not in self._brands:
                raise RecordNotFound()
            return copy.deepcopy(self._brands[brand_id])

    def brand_at(self, subdomain: str) -> int:
        """The brand whose Help Center answers at ``<subdomain>.<domain>``: another brand's
        subdomain picks that brand, any other host is the account's own (the default brand)."""
        with self._lock:
            for brand in self._brands.values():
                if brand["subdomain"] == subdomain and brand["id"] != self.default_brand_id:
                    return brand["id"]
            return self.default_brand_id

    def forbid_help_center(self, brand_id: int, forbidden: bool = True) -> None:
        """Make the brand's Help Center answer 403 to our token (an agent kept out of it)."""
        with self._lock:
            self.brand(brand_id)
            (self._forbidden_brands.add if forbidden else self._forbidden_brands.discard)(brand_id)

    def check_help_center(self, brand_id: int) -> None:
        """Raise what Zendesk answers when this brand's Help Center is closed to the token."""
        with self._lock:
            if brand_id in self._forbidden_brands:
                raise Forbidden()
            if not self.brand(brand_id)["has_help_center"]:
                raise RecordNotFound()

    # --- who may read (user segments) and edit (permission groups) Help Center content ----

    def _seed_user_segments(self) -> tuple[int, int]:
        """Zendesk's two built-in segments: signed-in users, and agents and managers."""
        signed_in = self.add_user_segment("Signed-in users", "signed_in_users", built_in=True)
        staff = self.add_user_segment("Agents and managers", "staff", built_in=True)
        return signed_in["id"], staff["id"]

    def add_user_segment(
        self,
        name: str,
        user_type: Literal["signed_in_users", "staff"] = "signed_in_users",
        *,
        tags: Iterable[str] = (),
        built_in: bool = False,
    ) -> Json:
        if user_type not in ("signed_in_users", "staff"):
            raise RecordInvalid(f"user_type: {user_type} is not valid")
        with self._lock:
            now = self._now()
            segment = {"id": self._next_id("user_segment"), "name": name, "user_type": user_type}
            segment |= {"built_in": built_in, "tags": list(tags), "or_tags": []}
            segment |= {"group_ids": [], "organization_ids": [], "added_user_ids": []}
            segment |= {"created_at": now, "updated_at": now}
            self._user_segments[segment["id"]] = segment
            return copy.deepcopy(segment)

    def delete_user_segment(self, segment_id: int) -> None:
        """Gone from the listing; articles that named it still do (as stale data would)."""
        with self._lock:
            if self._user_segments.pop(segment_id, None) is None:
                raise RecordNotFound()

    def user_segments(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._user_segments.values()))

    def user_segment(self, segment_id: int) -> Json:
        with self._lock:
            if segment_id not in self._user_segments:
                raise RecordNotFound()
            return copy.deepcopy(self._user_segments[segment_id])

    def _seed_permission_group(self) -> int:
        staff = [self.staff_segment_id]
        return self.add_permission_group("Admins", edit=staff, publish=staff, built_in=True)["id"]

    def add_permission_group(
        self,
        name: str,
        *,
        edit: Iterable[int] = (),
        publish: Iterable[int] = (),
        built_in: bool = False,
    ) -> Json:
        with self._lock:
            now = self._now()
            group = {"id": self._next_id("permission_group"), "name": name}
            group |= {"edit": list(edit), "publish": list(publish), "built_in": built_in}
            group |= {"created_at": now, "updated_at": now}
            self._permission_groups[group["id"]] = group
            return copy.deepcopy(group)

    def delete_permission_group(self, group_id: int) -> None:
        """Gone from the listing; articles that named it still do (as stale data would)."""
        with self._lock:
            if self._permission_groups.pop(group_id, None) is None:
                raise RecordNotFound()

    def permission_groups(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._permission_groups.values()))

    def permission_group(self, group_id: int) -> Json:
        with self._lock:
            if group_id not in self._permission_groups:
                raise RecordNotFound()
            return copy.deepcopy(self._permission_groups[group_id])

    # --- Help Center ----------------------------------------------------------------------

    def _seed_help_center(self) -> int:
        category = self.add_category("General")
        return self.add_section("Frequently asked questions", category["id"])["id"]

    def add_category(
        self,
        name: str,
        description: str = "",
        locale: str = "en-us",
        *,
        brand_id: int | None = None,
    ) -> Json:
        """A category of ``brand_id``'s Help Center (default: the default brand's)."""
        with self._lock:
            brand_id = self.brand(brand_id)["id"] if brand_id else self.default_brand_id
            now = self._now()
            category = {"id": self._next_id("category"), "name": name}
            category |= {"description": description, "locale": locale, "source_locale": locale}
            category |= {"position": len(self._categories), "outdated": False}
            category |= {"created_at": now, "updated_at": now}
            self._categories[category["id"]] = category
            self._brand_of_category[category["id"]] = brand_id
            return copy.deepcopy(category)

    def add_brand_help_center(self, brand_id: int, section: str = "FAQ") -> int:
        """A category and section in the brand's own Help Center; returns the section id."""
        category = self.add_category("General", brand_id=brand_id)
        return self.add_section(section, category["id"])["id"]

    def _brand_of(self, kind: str, resource: Json) -> int:
        """The brand whose Help Center holds a category, section or article."""
        if kind == "article":
            return self._brand_of("section", self._sections.get(resource["section_id"], {}))
        category = resource.get("category_id") if kind == "section" else resource.get("id")
        return self._brand_of_category.get(category or 0, self.default_brand_id)

    def add_section(
        self, name: str, category_id: int, description: str = "", locale: str = "en-us"
    ) -> Json:
        with self._lock:
            if category_id not in self._categories:
                raise RecordNotFound()
            now = self._now()
            section = {"id": self._next_id("section"), "category_id": category_id, "name": name}
            section |= {"description": description, "locale": locale, "source_locale": locale}
            section |= {"position": len(self._sections), "sorting": "manual", "outdated": False}
            section |= {"parent_section_id": None, "theme_template": "section_page"}
            section |= {"created_at": now, "updated_at": now}
            self._sections[section["id"]] = section
            return copy.deepcopy(section)

    def add_article(
        self,
        title: str,
        body_html: str,
        section_id: int | None = None,
        locale: str = "en-us",
        draft: bool = False,
        label_names: Iterable[str] = (),
        *,
        user_segment_id: int | None = None,
        permission_group_id: int | None = None,
    ) -> Json:
        """Publish (or save as a draft) an article in ``section_id``, by default the seeded one,
        visible to ``user_segment_id`` (None: everyone) and edited by ``permission_group_id``
        (default: the seeded group)."""
        spec = {"title": title, "body": body_html, "locale": locale, "draft": draft}
        spec["label_names"] = list(label_names)
        spec["user_segment_id"] = user_segment_id
        spec["permission_group_id"] = permission_group_id or self.default_permission_group_id
        section = self.default_section_id if section_id is None else section_id
        return self.create_article(section, spec, self.agent["id"])

    def create_article(
        self, section_id: int, spec: Json, author_id: int, *, brand_id: int | None = None
    ) -> Json:
        """``POST /help_center/sections/{id}/articles`` at ``brand_id``'s Help Center: ``draft``
        as given, else published. As in Guide, ``permission_group_id`` is required and
        ``user_segment_id`` must be given (null: everyone); unknown ids are not found."""
        if not spec.get("title"):
            raise RecordInvalid("Title: cannot be blank")
        if spec.get("permission_group_id") is None:
            raise InvalidAttribute("permission_group_id", "You must provide permission_group_id.")
        if "user_segment_id" not in spec and not spec.get("user_segment_ids"):
            raise InvalidAttribute(
                "user_segment_id",
                "You must provide user_segment_id. Set to 'null' to make it visible to everyone.",
            )
        with self._lock:
            if section_id not in self._sections or brand_id not in (
                None,
                self._brand_of("section", self._sections[section_id]),
            ):
                raise RecordNotFound()
            self.permission_group(int(spec["permission_group_id"]))
            segments = spec.get("user_segment_ids") or [spec.get("user_segment_id")]
            for segment_id in (s for s in segments if s is not None):
                self.user_segment(int(segment_id))
            now, locale = self._now(), (spec.get("locale") or "en-us").lower()
            article = copy.deepcopy(ARTICLE_TEMPLATE) | {
                k: spec[k] for k in ARTICLE_TEMPLATE if spec.get(k) is not None
            }
            article |= {"id": self._next_id("article"), "author_id": author_id}
            article |= {"section_id": section_id, "locale": locale, "source_locale": locale}
            article |= {"title": spec["title"], "name": spec["title"]}
            article["draft"] = bool(article["draft"])
            article |= {"created_at": now, "updated_at": now, "edited_at": now}
            self._articles[article["id"]] = article
            return copy.deepcopy(article)

    def add_translation(
        self, article_id: int, locale: str, title: str, body_html: str, draft: bool = False
    ) -> Json:
        """The article in another locale: listed under that locale with the article's id."""
        with self._lock:
            self._live_article(article_id)
            now, locale = self._now(), locale.lower()
            texts = {"locale": locale, "title": title, "name": title, "body": body_html}
            texts |= {"draft": draft, "created_at": now, "updated_at": now, "edited_at": now}
            self._translations.setdefault(article_id, {})[locale] = texts
            return copy.deepcopy(self._in_locale(self._articles[article_id], locale) or {})

    def set_article_segment(self, article_id: int, user_segment_id: int | None) -> Json:
        """Who may read the article from now on (None: everyone), as an admin sets it."""
        with self._lock:
            article = self._live_article(article_id)
            if user_segment_id is not None:
                self.user_segment(user_segment_id)
            article["user_segment_id"] = user_segment_id
            article["user_segment_ids"] = [] if user_segment_id is None else [user_segment_id]
            article["updated_at"] = self._now()
            return copy.deepcopy(article)

    def _in_locale(self, article: Json, locale: str | None) -> Json | None:
        """The article as listed under ``locale``: itself, its translation, or absent."""
        if locale in (None, article["locale"]):
            return article
        translation = self._translations.get(article["id"], {}).get(locale)
        return None if translation is None else article | translation

    def update_article(
        self,
        article_id: int,
        *,
        title: str | None = None,
        body_html: str | None = None,
        draft: bool | None = None,
    ) -> Json:
        with self._lock:
            article = self._live_article(article_id)
            if title is not None:
                article["title"] = article["name"] = title
            if body_html is not None:
                article["body"] = body_html
            if draft is not None:
                article["draft"] = draft
            article["updated_at"] = article["edited_at"] = self._now()
            return copy.deepcopy(article)

    def archive_article(self, article_id: int) -> None:
        """Archive an article: it leaves every listing and showing it answers 404."""
        with self._lock:
            self._live_article(article_id)
            self._archived.add(article_id)

    def _live_article(self, article_id: int) -> Json:
        if article_id not in self._articles or article_id in self._archived:
            raise RecordNotFound()
        return self._articles[article_id]

    def article(
        self, article_id: int, locale: str | None = None, *, brand_id: int | None = None
    ) -> Json:
        with self._lock:
            article = self._live_article(article_id)
            shown = self._in_locale(article, locale.lower() if locale else None)
            if shown is None or brand_id not in (None, self._brand_of("article", article)):
                raise RecordNotFound()
            return copy.deepcopy(shown)

    def articles(
        self,
        locale: str | None = None,
        section_id: int | None = None,
        *,
        brand_id: int | None = None,
    ) -> list[Json]:
        """Live articles, drafts included: an agent's token sees drafts, as in Zendesk. With a
        locale, each article in it or translated to it; with a brand, its Help Center's only."""
        locale = locale.lower() if locale else None
        with self._lock:
            if section_id is not None and section_id not in self._sections:
                raise RecordNotFound()
            found = [
                self._in_locale(a, locale)
                for a in self._articles.values()
                if a["id"] not in self._archived
                and section_id in (None, a["section_id"])
                and brand_id in (None, self._brand_of("article", a))
            ]
            return copy.deepcopy([a for a in found if a is not None])

    def articles_since(self, start_time: int, *, brand_id: int | None = None) -> list[Json]:
        """Articles changed at or after ``start_time``, oldest change first."""
        found = self.articles(brand_id=brand_id)
        found = [a for a in found if epoch(a["updated_at"]) >= start_time]
        return sorted(found, key=lambda a: (epoch(a["updated_at"]), a["id"]))

    def help_center_locales(self, brand_id: int | None = None) -> tuple[list[str], str]:
        """The locales the brand's Help Center holds content in, and its default (en-us)."""
        with self._lock:
            articles = self.articles(brand_id=brand_id or self.default_brand_id)
            locales = {"en-us"} | {a["locale"] for a in articles}
            locales |= {t for a in articles for t in self._translations.get(a["id"], {})}
            return sorted(locales), "en-us"

    def sections(self, locale: str | None = None, *, brand_id: int | None = None) -> list[Json]:
        with self._lock:
            found = [
                s
                for s in self._sections.values()
                if locale in (None, s["locale"])
                and brand_id in (None, self._brand_of("section", s))
            ]
            return copy.deepcopy(found)

    def categories(self, locale: str | None = None, *, brand_id: int | None = None) -> list[Json]:
        with self._lock:
            found = [
                c
                for c in self._categories.values()
                if locale in (None, c["locale"])
                and brand_id in (None, self._brand_of("category", c))
            ]
            return copy.deepcopy(found)

    # --- macros ---------------------------------------------------------------------------

    def add_macro(
        self,
        title: str,
        comment: str,
        *,
        active: bool = True,
        actions: Iterable[Json] = (),
        html: bool = False,
    ) -> Json:
        """A macro whose ``comment_value`` action (``comment_value_html`` when ``html``) puts
        ``comment`` into the reply, Liquid placeholders and all."""
        with self._lock:
            now = self._now()
            macro = {"id": self._next_id("macro"), "title": title, "raw_title": title}
            macro |= {"active": active, "description": None, "position": len(self._macros)}
            macro |= {"restriction": None, "default": False}
            field = "comment_value_html" if html else "comment_value"
            macro["actions"] = [{"field": field, "value": comment}, *actions]
            macro |= {"created_at": now, "updated_at": now}
            self._macros[macro["id"]] = macro
            return copy.deepcopy(macro)

    def macro(self, macro_id: int) -> Json:
        with self._lock:
            if macro_id not in self._macros:
                raise RecordNotFound()
            return copy.deepcopy(self._macros[macro_id])

    def macros(self, active: bool | None = None) -> list[Json]:
        with self._lock:
            found = [m for m in self._macros.values() if active in (None, m["active"])]
            return copy.deepcopy(found)

    def add_placeholder_macros(self) -> list[Json]:
        """The macros of PLACEHOLDER_MACROS: one of each kind of Liquid real macros hold."""
        return [self.add_macro(title, text, html=html) for title, text, html in PLACEHOLDER_MACROS]

    # --- recorded responses: real accounts' objects, served as recorded ------------------

    def load_recorded(
        self, kind: str, payload: Json, *, ticket_id: int | None = None
    ) -> list[Json]:
        """Serve the objects of a recorded Zendesk response (``{"tickets": [...]}`` or
        ``{"ticket": {...}}``) with their fields as recorded, less the ``url``, which is
        rendered for the host called. Comments need the ``ticket_id`` they were listed under.
        A ticket joins the export as the newest change; ``generated_timestamp`` (which the
        export adds) is taken from ``updated_at`` when the recording has none."""
        if kind not in RECORDED_KINDS:
            raise InvalidParameter(f"recorded kind {kind!r}: one of {', '.join(RECORDED_KINDS)}")
        one = RECORDED_KINDS[kind]
        found = payload.get(kind, [payload[one]] if one in payload else None)
        if not isinstance(found, list) or not all(isinstance(o, dict) and "id" in o for o in found):
            raise InvalidParameter(f"a recorded {kind} response holds {kind!r} or {one!r} with ids")
        objects = [{k: v for k, v in copy.deepcopy(o).items() if k != "url"} for o in found]
        with self._lock:
            if kind == "comments":
                self._load_comments(objects, ticket_id)
            for obj in objects if kind != "comments" else []:
                self._load_one(kind, obj)
            return copy.deepcopy(objects)

    def _load_one(self, kind: str, obj: Json) -> None:
        if kind == "tickets":
            obj.setdefault("generated_timestamp", epoch(obj.get("updated_at") or self._now()))
            self._comments.setdefault(obj["id"], [])
            self._seq += 1
            self._ticket_seq[obj["id"]] = self._seq
        getattr(self, RECORDED_STORES[kind])[obj["id"]] = obj
        self._reserve_id(RECORDED_KINDS[kind], obj["id"])

    def _load_comments(self, comments: list[Json], ticket_id: int | None) -> None:
        if ticket_id is None or ticket_id not in self._tickets:
            raise InvalidParameter("recorded comments need the ticket_id of a loaded ticket")
        ids = {c["id"] for c in comments}
        kept = [c for c in self._comments[ticket_id] if c["id"] not in ids]
        self._comments[ticket_id] = kept + comments
        for comment in comments:
            self._reserve_id("event", comment["id"])

    def _reserve_id(self, kind: str, used: Any) -> None:
        """Keep ids the sandbox hands out later clear of a recorded one."""
        if isinstance(used, int):
            following = self._next_id(kind)
            self._counters[kind] = itertools.count(max(following, used + 1))

    # --- webhooks -------------------------------------------------------------------------

    def create_webhook(self, spec: Json) -> Json:
        missing = [k for k in ("name", "endpoint") if not spec.get(k)]
        if missing:
            raise RecordInvalid(f"{', '.join(missing)}: cannot be blank")
        with self._lock:
            now, agent = self._now(), str(self.agent["id"])
            webhook = {"id": f"01HSANDBOX{self._next_id('webhook'):016d}", "status": "active"}
            webhook |= {"http_method": "POST", "request_format": "json", "description": None}
            webhook["subscriptions"] = ["conditional_ticket_events"]
            webhook |= {"created_at": now, "created_by": agent}
            webhook |= {"updated_at": now, "updated_by": agent}
            webhook |= self._webhook_fields(spec)
            self._webhooks[webhook["id"]] = webhook
            self._secrets[webhook["id"]] = _new_secret()
            return copy.deepcopy(webhook)

    def _webhook_fields(self, spec: Json) -> Json:
        chosen = {k: spec[k] for k in WEBHOOK_FIELDS if spec.get(k) is not None}
        if chosen.get("status", "active") not in ("active", "inactive"):
            raise RecordInvalid(f"status: {chosen['status']} is not valid")
        return chosen

    def webhook(self, webhook_id: str) -> Json:
        with self._lock:
            if webhook_id not in self._webhooks:
                raise RecordNotFound()
            return copy.deepcopy(self._webhooks[webhook_id])

    def webhooks(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._webhooks.values()))

    def update_webhook(self, webhook_id: str, spec: Json) -> Json:
        """PUT and PATCH alike: the fields given replace the stored ones."""
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise RecordNotFound()
            webhook |= self._webhook_fields(spec) | {"updated_at": self._now()}
            return copy.deepcopy(webhook)

    def delete_webhook(self, webhook_id: str) -> None:
        with self._lock:
            if self._webhooks.pop(webhook_id, None) is None:
                raise RecordNotFound()

    def signing_secret(self, webhook_id: str, *, reset: bool = False) -> str:
        with self._lock:
            self.webhook(webhook_id)
            if reset:
                self._secrets[webhook_id] = _new_secret()
            return self._secrets[webhook_id]

    # --- triggers -------------------------------------------------------------------------

    def create_trigger(self, spec: Json) -> Json:
        if not (spec.get("title") and spec.get("actions") and spec.get("conditions")):
            raise RecordInvalid("Title, conditions and actions: cannot be blank")
        with self._lock:
            now = self._now()
            trigger = {"id": self._next_id("trigger"), "active": True, "default": False}
            trigger |= {"position": len(self._triggers) + 1, "description": None}
            trigger |= {"category_id": None, "created_at": now, "updated_at": now}
            trigger |= self._trigger_fields(spec)
            self._triggers[trigger["id"]] = trigger
            return copy.deepcopy(trigger)

    def _trigger_fields(self, spec: Json) -> Json:
        chosen = {k: spec[k] for k in TRIGGER_FIELDS if spec.get(k) is not None}
        if "title" in chosen:
            chosen["raw_title"] = chosen["title"]
        return chosen

    def trigger(self, trigger_id: int) -> Json:
        with self._lock:
            if trigger_id not in self._triggers:
                raise RecordNotFound()
            return copy.deepcopy(self._triggers[trigger_id])

    def triggers(self, active: bool | None = None) -> list[Json]:
        with self._lock:
            found = [t for t in self._triggers.values() if active in (None, t["active"])]
            return copy.deepcopy(found)

    def update_trigger(self, trigger_id: int, spec: Json) -> Json:
        with self._lock:
            trigger = self._triggers.get(trigger_id)
            if trigger is None:
                raise RecordNotFound()
            trigger |= self._trigger_fields(spec) | {"updated_at": self._now()}
            return copy.deepcopy(trigger)

    def delete_trigger(self, trigger_id: int) -> None:
        with self._lock:
            if self._triggers.pop(trigger_id, None) is None:
                raise RecordNotFound()


def _new_secret() -> str:
    """A signing secret shaped like Zendesk's (base64 text, used as-is as the HMAC key)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()
