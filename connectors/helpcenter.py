"""Help Center articles (and optionally macros and solved tickets) into the knowledge base.

Each kind is one ``rag`` source, synced as a whole listing: unchanged articles are skipped by
content hash, changed ones re-embedded, and ones gone from Zendesk (deleted, archived, or
turned back into drafts) soft-deleted. Articles come from every brand's Help Center, in every
locale, and keep who may read them: an article whose user segment a customer is not in (or
whose segment cannot be resolved) is stored as "internal", for agents only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aitl.core.db import Database
from aitl.core.pii import redact
from connectors import exceptions, store
from connectors.attachments import attachment_notes
from connectors.client import ZendeskClient
from connectors.tickets import parse_time
from rag import store as rag_store
from rag.ingest import Ingestor, IngestReport
from rag.loaders import html_to_text
from rag.models import SourceDocument

ARTICLES, MACROS, CASES = "zendesk:help_center", "zendesk:macros", "zendesk:cases"
# which articles may be quoted to customers, by default: those visible to everyone (no user
# segment) and those for Zendesk's built-in "Signed-in users" segment
EVERYONE, SIGNED_IN_USERS = "everyone", "signed_in_users"
DEFAULT_CUSTOMER_SEGMENTS = (EVERYONE, SIGNED_IN_USERS)
# what stops us reading a listing (no access, no such thing): reported, never retried
UNREADABLE = (exceptions.ZendeskAuthFailed, exceptions.ZendeskNotFound)


@dataclass(frozen=True)
class KbSyncOptions:
    macros: bool
    solved_tickets: bool
    max_cases: int = 2000
    customer_segments: tuple[str, ...] = DEFAULT_CUSTOMER_SEGMENTS


@dataclass
class HelpCenterNotes:
    """What an article sync tells the admin beyond the counts (``aitl zendesk sync-kb``)."""

    brands: list[str] = field(default_factory=list)  # Help Centers read
    internal: int = 0  # articles stored as agent-only
    unresolved: list[str] = field(default_factory=list)  # article: why it is internal
    warnings: list[str] = field(default_factory=list)  # a listing that could not be read
    unreadable_brands: list[str] = field(default_factory=list)
    # the Help Centers not read (brand id; None: the default brand's): their articles are kept
    unreadable_sites: set[str | None] = field(default_factory=set)


class KbSyncReports(dict[str, IngestReport]):
    """The ingest report of each source, plus the Help Center notes of the article sync."""

    def __init__(self, help_center: HelpCenterNotes) -> None:
        super().__init__()
        self.help_center = help_center


# --- Help Center articles: one Help Center per brand, each locale one document -------------


@dataclass(frozen=True)
class HelpCenterSite:
    """One brand's Help Center, read at the brand's own host."""

    client: ZendeskClient
    brand: dict[str, Any] | None  # None: the brands could not be listed, one Help Center
    default: bool  # the default brand's: its default locale keeps the plain article ids

    @property
    def key(self) -> str | None:
        """How its articles' external ids name it (None: the default brand's)."""
        return None if self.default or self.brand is None else str(self.brand["id"])

    @property
    def restricted(self) -> bool:
        """Customers cannot open this Help Center, so nothing in it may be quoted to them."""
        return bool(self.brand) and self.brand.get("help_center_state") == "restricted"

    @property
    def label(self) -> str:
        if self.brand is None:
            return "the Help Center"
        return f"brand {self.brand.get('name')!r} ({self.brand['id']})"

    def external_id(self, article_id: int, locale: str, default_locale: str) -> str:
        """The default brand's default-locale articles keep the ids they had before brands
        and locales were synced, so existing documents (and the events citing them) stay."""
        if self.default and locale == default_locale:
            return str(article_id)
        if self.key is None:
            return f"{article_id}:{locale}"
        return f"{self.key}:{article_id}:{locale}"


def site_of(external_id: str) -> str | None:
    """The brand a stored article's external id names (None: the default brand)."""
    parts = external_id.split(":")
    return parts[0] if len(parts) == 3 else None


def help_centers(client: ZendeskClient) -> list[HelpCenterSite]:
    """Every brand's enabled Help Center the token can list; the default brand's read through
    ``client`` itself. Without a brands listing (no access), the one Help Center as before."""
    try:
        brands = [b for b in client.brands() if b.get("active", True) and not b.get("is_deleted")]
    except UNREADABLE:
        brands = []
    if not brands:
        return [HelpCenterSite(client, None, default=True)]
    default = next((b for b in brands if b.get("default")), brands[0])
    return [
        HelpCenterSite(
            client if brand is default else client.for_brand(brand["subdomain"]),
            brand,
            default=brand is default,
        )
        for brand in brands
        if brand.get("has_help_center") and brand.get("help_center_state") in OPEN_STATES
    ]


# "restricted": a Help Center open to agents only (being set up, or closed to the public);
# its articles are synced for agents but never quoted to customers
OPEN_STATES = frozenset({"enabled", "restricted"})


@dataclass(frozen=True)
class Visibility:
    """Who may read an article, resolved from the account's user segments and permission
    groups, and whether that lets a draft quote it to a customer."""

    customer_segments: frozenset[str]  # lower-cased ids, names, EVERYONE, SIGNED_IN_USERS
    segments: dict[int, dict[str, Any]]
    groups: dict[int, dict[str, Any]]
    segments_problem: str | None = None  # why ``segments`` could not be listed
    groups_problem: str | None = None

    def quotable(self, segment: dict[str, Any]) -> bool:
        wanted = self.customer_segments
        signed_in = segment.get("built_in") and segment.get("user_type") == "signed_in_users"
        return bool(
            (SIGNED_IN_USERS in wanted and signed_in)
            or str(segment.get("id")) in wanted
            or (segment.get("name") or "").strip().lower() in wanted
        )

    def of(self, article: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
        """(audience, metadata, problems): an article whose segment or permission group
        cannot be resolved is internal, and the problems say why."""
        ids = article.get("user_segment_ids") or [article.get("user_segment_id")]
        ids = [i for i in ids if i is not None]
        found = [self.segments[i] for i in ids if i in self.segments]
        problems = [
            f"user segment {i} {self.segments_problem or 'not found'}"
            for i in ids
            if i not in self.segments
        ]
        group_id = article.get("permission_group_id")
        group = self.groups.get(group_id) if group_id is not None else None
        if group is None:
            problems.append(f"permission group {group_id} {self.groups_problem or 'not found'}")
        if not ids:
            public = EVERYONE in self.customer_segments
        else:
            public = any(self.quotable(s) for s in found)
        shown = [
            {"id": s["id"], "name": s.get("name"), "user_type": s.get("user_type")} for s in found
        ]
        first = shown[0] if shown else None
        metadata = {
            "user_segments": shown,
            "user_segment_id": ids[0] if ids else None,
            "user_segment_name": first["name"] if first else (None if ids else "Everyone"),
            "user_segment_type": first["user_type"] if first else (None if ids else EVERYONE),
            "permission_group_id": group_id,
            "permission_group_name": group.get("name") if group else None,
        }
        if problems:
            metadata["visibility_problem"] = "; ".join(problems)
        return ("public" if public and not problems else "internal"), metadata, problems


def _listed(read, what: str) -> tuple[Any, str | None]:
    """A listing, or (nothing, why) when the token may not read it: the sync goes on, and
    whatever needed the listing is treated as agent-only."""
    try:
        return read(), None
    except UNREADABLE as exc:
        return {}, f"could not be resolved: the {what} are not readable ({exc})"


def article_documents(
    client: ZendeskClient,
    customer_segments: tuple[str, ...] = DEFAULT_CUSTOMER_SEGMENTS,
    notes: HelpCenterNotes | None = None,
) -> Iterator[SourceDocument]:
    """Every published article of every brand's Help Center, each translation one document,
    with its audience, brand and locale. A Help Center the token cannot read is noted in
    ``notes`` (with its brand) and skipped; the others are read. User segments and permission
    groups belong to the account, so they are read once, at the account's own host."""
    notes = notes if notes is not None else HelpCenterNotes()
    segments, segments_problem = _listed(client.user_segments, "user segments")
    listed, groups_problem = _listed(client.permission_groups, "permission groups")
    for problem in (p for p in (segments_problem, groups_problem) if p):
        notes.warnings.append(f"{problem}: the articles naming one are internal")
    visibility = Visibility(
        frozenset(s.strip().lower() for s in customer_segments),
        segments,
        {g["id"]: g for g in listed or []},
        segments_problem,
        groups_problem,
    )
    for site in help_centers(client):
        try:
            yield from _site_documents(site, visibility, notes)
            notes.brands.append(site.label)
        except UNREADABLE as exc:
            notes.unreadable_sites.add(site.key)
            notes.unreadable_brands.append(
                f"{site.label} at {site.client.base_url}: its Help Center could not be read"
                f" ({exc}); its articles are kept as last synced"
            )


def _site_documents(
    site: HelpCenterSite, visibility: Visibility, notes: HelpCenterNotes
) -> Iterator[SourceDocument]:
    client = site.client
    sections, categories = client.sections(), client.categories()
    locales, default_locale = client.help_center_locales()
    for locale in locales:
        for article in client.locale_articles(locale):
            if article.get("draft"):
                continue
            section = sections.get(article.get("section_id"), {})
            category = categories.get(section.get("category_id"), {})
            title, body = html_to_text(
                article.get("body") or "",
                fallback=str(article["id"]),
                base_url=article.get("html_url"),
            )
            if not body.strip():
                continue
            audience, visible, problems = visibility.of(article)
            if site.restricted and audience == "public":
                audience = "internal"
                visible = {**visible, "visibility_problem": "the brand's Help Center is restricted"}
            locale_of = (article.get("locale") or locale).lower()
            if problems:
                notes.unresolved.append(
                    f"article {article['id']} {article.get('title')!r} ({locale_of}, {site.label}):"
                    f" {'; '.join(problems)}; treated as internal"
                )
            notes.internal += audience == "internal"
            yield SourceDocument(
                source=ARTICLES,
                external_id=site.external_id(article["id"], locale_of, default_locale),
                title=article.get("title") or title,
                body=body,
                url=article.get("html_url"),
                locale=locale_of,
                updated_at=parse_time(article.get("updated_at")) or datetime.now(UTC),
                audience=audience,
                brand=str(site.brand["id"]) if site.brand else None,
                metadata={
                    "article_id": str(article["id"]),
                    "section": section.get("name"),
                    "category": category.get("name"),
                    "section_id": article.get("section_id"),
                    "labels": article.get("label_names"),
                    "brand_name": site.brand.get("name") if site.brand else None,
                    **visible,
                },
            )


def sync_articles(
    db: Database, ingestor: Ingestor, documents: list[SourceDocument], notes: HelpCenterNotes
) -> IngestReport:
    """Make the articles source hold ``documents``, except that the stored articles of a Help
    Center that could not be read are kept: a brand closed to the token loses nothing."""
    if not notes.unreadable_sites:
        return ingestor.sync(documents, source=ARTICLES)
    report = ingestor.ingest(documents, source=ARTICLES)
    with db.connection() as conn:
        rag_store.lock_source(conn, ARTICLES)
        stored = rag_store.document_hashes(conn, ARTICLES)
        kept = [e for e in stored if site_of(e) in notes.unreadable_sites]
        seen = [d.external_id for d in documents] + kept
        report.deleted = len(rag_store.soft_delete_missing(conn, ARTICLES, seen))
    return report


def macro_documents(client: ZendeskClient) -> Iterator[SourceDocument]:
    """Macros' reply texts with their Liquid placeholders kept as written: drafts render
    or remove them (rag/placeholders.py), the knowledge base keeps what the macro says."""
    for macro in client.macros():
        body = "\n".join(_flatten(_placeholder_links(t)) for t in _reply_texts(macro) if t).strip()
        if body:
            yield SourceDocument(
                source=MACROS,
                external_id=str(macro["id"]),
                title=macro.get("title") or "Macro",
                body=body,
                updated_at=parse_time(macro.get("updated_at")) or datetime.now(UTC),
                metadata={"kind": "macro"},
            )


def _reply_texts(macro: dict[str, Any]) -> list[Any]:
    """The macro's comment text: its HTML version when it has one (links kept), else the
    plain one. A macro may carry both, saying the same thing twice."""
    actions = macro.get("actions") or []
    for kind in ("comment_value_html", "comment_value"):
        texts = [a.get("value") for a in actions if a.get("field") == kind and a.get("value")]
        if texts:
            return texts
    return []


_PLACEHOLDER_LINK = re.compile(
    r"""<a\b[^>]*?\bhref\s*=\s*["']\s*(\{\{[^"']*?\}\})\s*["'][^>]*>(.*?)</a\s*>""", re.I | re.S
)


def _placeholder_links(value: Any) -> Any:
    """A macro's ``<a href="{{satisfaction.rating_url}}">`` as ``[text]({{…}})``: HTML to
    text keeps only absolute links, and would drop this one with its placeholder."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    return _PLACEHOLDER_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", value)


def case_documents(db: Database, limit: int) -> Iterator[SourceDocument]:
    """Solved tickets as past cases: the public conversation, PII redacted."""
    with db.connection() as conn:
        for ticket_id in store.solved_tickets(conn, limit):
            ticket = store.ticket(conn, ticket_id)
            comments = store.comments(conn, ticket_id)
            notes = attachment_notes(comments, store.attachments(conn, ticket_id))
            lines = [
                f"{c.author_role}: {c.body_redacted}{notes.get(c.comment_id, '')}"
                for c in comments
                if c.public
            ]
            if len(lines) >= 2:
                yield SourceDocument(
                    source=CASES,
                    external_id=str(ticket_id),
                    title=redact(ticket.subject),
                    body="\n\n".join(lines),
                    updated_at=ticket.updated_at or datetime.now(UTC),
                    metadata={"kind": "past_case"},
                )


def _flatten(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return html_to_text(str(value), fallback="macro")[1] if "<" in str(value) else str(value)


def sync_knowledge(
    db: Database, client: ZendeskClient, ingestor: Ingestor, options: KbSyncOptions
) -> KbSyncReports:
    """Every listing is read in full before anything is written, so a failed read (retried
    later) neither half-updates nor prunes the knowledge base."""
    reports = KbSyncReports(HelpCenterNotes())
    notes = reports.help_center
    articles = list(article_documents(client, options.customer_segments, notes))
    reports[ARTICLES] = sync_articles(db, ingestor, articles, notes)
    if options.macros:
        reports[MACROS] = ingestor.sync(macro_documents(client), source=MACROS)
    if options.solved_tickets:
        reports[CASES] = ingestor.sync(case_documents(db, options.max_cases), source=CASES)
    return reports


def draft_article(
    client: ZendeskClient,
    title: str,
    body_html: str,
    section_id: int | None = None,
    *,
    permission_group_id: int | None = None,
    user_segment_id: int | None = None,
) -> tuple[int, str]:
    """Save an article as a Help Center draft, never published; returns its id and URL.

    Without a configured section the first one listed is used; with none at all, the admin
    is told what to create. Guide requires a permission group (default: the first listed)
    and takes a user segment (default: the built-in agents and managers, so a draft published
    by mistake is still not public). A refusal carries Zendesk's own reason. A draft of the
    same title already in the section is returned instead of a second one: a create that
    timed out may still have landed, and the job that retries it must not leave two drafts.
    """
    if section_id is None:
        sections = client.sections()
        if not sections:
            raise exceptions.ZendeskNotFound(
                "the Help Center has no section to draft articles in: create one in Zendesk"
                " Guide, or set AITL_ZENDESK_DRAFTS_SECTION_ID"
            )
        section_id = min(sections)
    article = _existing_draft(client, section_id, title)
    if article is None:
        group = permission_group_id or _first_permission_group(client)
        segment = user_segment_id or _staff_segment(client)
        try:
            article = client.create_article_draft(
                section_id, title, body_html, permission_group_id=group, user_segment_id=segment
            )
        except (exceptions.ZendeskRefused, exceptions.ZendeskNotFound) as exc:
            raise type(exc)(
                f"Zendesk Guide refused the draft {title!r} (section {section_id}, permission"
                f" group {group}, user segment {segment}): {exc}"
            ) from exc
    return int(article["id"]), str(article.get("html_url") or article.get("url") or "")


def _first_permission_group(client: ZendeskClient) -> int:
    groups = client.permission_groups()
    if not groups:
        raise exceptions.ZendeskNotFound(
            "Zendesk Guide lists no permission group, which an article needs: create one in"
            " Guide (user permissions), or set AITL_ZENDESK_DRAFTS_PERMISSION_GROUP_ID"
        )
    return int(groups[0]["id"])


def _staff_segment(client: ZendeskClient) -> int:
    """The built-in "Agents and managers" segment (user type staff)."""
    for segment in client.user_segments().values():
        if segment.get("built_in") and segment.get("user_type") == "staff":
            return int(segment["id"])
    raise exceptions.ZendeskNotFound(
        "Zendesk Guide lists no built-in agents-and-managers user segment: set"
        " AITL_ZENDESK_DRAFTS_USER_SEGMENT_ID to the segment drafts should be visible to"
    )


def _existing_draft(client: ZendeskClient, section_id: int, title: str) -> dict[str, Any] | None:
    for article in client.section_articles(section_id):
        if article.get("draft") and (article.get("title") or "").strip() == title.strip():
            return article
    return None
