"""Help Center articles (and optionally macros and solved tickets) into the knowledge base.

Each kind is one ``rag`` source, synced as a whole listing: unchanged articles are skipped by
content hash, changed ones re-embedded, and ones gone from Zendesk (deleted, archived, or
turned back into drafts) soft-deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aitl.core.db import Database
from aitl.core.pii import redact
from connectors import exceptions, store
from connectors.client import ZendeskClient
from connectors.tickets import parse_time
from rag.ingest import Ingestor, IngestReport
from rag.loaders import html_to_text
from rag.models import SourceDocument

ARTICLES, MACROS, CASES = "zendesk:help_center", "zendesk:macros", "zendesk:cases"


@dataclass(frozen=True)
class KbSyncOptions:
    macros: bool
    solved_tickets: bool
    max_cases: int = 2000


def article_documents(client: ZendeskClient) -> Iterator[SourceDocument]:
    sections, categories = client.sections(), client.categories()
    for article in client.articles():
        if article.get("draft"):
            continue
        section = sections.get(article.get("section_id"), {})
        category = categories.get(section.get("category_id"), {})
        title, body = html_to_text(article.get("body") or "", fallback=str(article["id"]))
        if not body.strip():
            continue
        yield SourceDocument(
            source=ARTICLES,
            external_id=str(article["id"]),
            title=article.get("title") or title,
            body=body,
            url=article.get("html_url"),
            locale=article.get("locale") or "en-us",
            updated_at=parse_time(article.get("updated_at")) or datetime.now(UTC),
            metadata={
                "section": section.get("name"),
                "category": category.get("name"),
                "section_id": article.get("section_id"),
                "labels": article.get("label_names"),
            },
        )


def macro_documents(client: ZendeskClient) -> Iterator[SourceDocument]:
    for macro in client.macros():
        texts = [
            a.get("value")
            for a in macro.get("actions") or []
            if a.get("field") in ("comment_value", "comment_value_html")
        ]
        body = "\n".join(_flatten(t) for t in texts if t).strip()
        if body:
            yield SourceDocument(
                source=MACROS,
                external_id=str(macro["id"]),
                title=macro.get("title") or "Macro",
                body=body,
                updated_at=parse_time(macro.get("updated_at")) or datetime.now(UTC),
                metadata={"kind": "macro"},
            )


def case_documents(db: Database, limit: int) -> Iterator[SourceDocument]:
    """Solved tickets as past cases: the public conversation, PII redacted."""
    with db.connection() as conn:
        for ticket_id in store.solved_tickets(conn, limit):
            ticket = store.ticket(conn, ticket_id)
            lines = [
                f"{c.author_role}: {c.body_redacted}"
                for c in store.comments(conn, ticket_id)
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
) -> dict[str, IngestReport]:
    reports = {ARTICLES: ingestor.sync(article_documents(client), source=ARTICLES)}
    if options.macros:
        reports[MACROS] = ingestor.sync(macro_documents(client), source=MACROS)
    if options.solved_tickets:
        reports[CASES] = ingestor.sync(case_documents(db, options.max_cases), source=CASES)
    return reports


def draft_article(
    client: ZendeskClient, title: str, body_html: str, section_id: int | None = None
) -> tuple[int, str]:
    """Save an article as a Help Center draft, never published; returns its id and URL.

    Without a configured section the first one listed is used; with none at all, the admin
    is told what to create. A draft of the same title already in the section is returned
    instead of a second one: a create that timed out may still have landed, and the job
    that retries it must not leave two drafts.
    """
    if section_id is None:
        sections = client.sections()
        if not sections:
            raise exceptions.ZendeskNotFound(
                "the Help Center has no section to draft articles in: create one in Zendesk"
                " Guide, or set AITL_ZENDESK_DRAFTS_SECTION_ID"
            )
        section_id = min(sections)
    article = _existing_draft(client, section_id, title) or client.create_article_draft(
        section_id, title, body_html
    )
    return int(article["id"]), str(article.get("html_url") or article.get("url") or "")


def _existing_draft(client: ZendeskClient, section_id: int, title: str) -> dict[str, Any] | None:
    for article in client.section_articles(section_id):
        if article.get("draft") and (article.get("title") or "").strip() == title.strip():
            return article
    return None
