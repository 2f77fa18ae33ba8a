"""Comments' attachments as Zendesk lists them, and their files when a setting asks for them.

A listing is kept whatever shape it comes in: an attachment without a URL, or of an unknown
content type, is stored by name; one too malformed to identify (no id) is logged and
skipped, never failing the ticket's sync. Files are fetched only with
``AITL_ZENDESK_STORE_ATTACHMENTS``, at most ``AITL_ZENDESK_ATTACHMENT_MAX_BYTES`` each; a
download that fails is logged, the listing stays, and the next sync of the ticket tries again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aitl.core.db import Database
from aitl.core.pii import redact
from aitl.core.settings import Settings
from connectors import exceptions, store
from connectors.client import ZendeskClient
from rag import attachments as attached
from rag.models import Attachment

log = logging.getLogger(__name__)

_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "", True, False) else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def attachment_row(raw: Any, comment_id: int, ticket_id: int) -> dict[str, Any] | None:
    """One attachment of a comment as a ``zendesk_attachments`` row; None without an id."""
    attachment_id = _int(raw.get("id")) if isinstance(raw, dict) else None
    if attachment_id is None:
        log.warning("ticket %s comment %s: attachment without an id skipped", ticket_id, comment_id)
        return None
    content_type = _text(raw.get("content_type"))
    if content_type is not None and not _MIME.match(content_type):
        content_type = None  # not a content type at all: the file is listed by name
    url = _text(raw.get("content_url"))
    if url is not None and (not url.startswith(("https://", "http://")) or raw.get("deleted")):
        url = None
    return {
        "attachment_id": attachment_id,
        "comment_id": comment_id,
        "ticket_id": ticket_id,
        "file_name": _text(raw.get("file_name")) or f"attachment-{attachment_id}",
        "content_type": content_type.lower() if content_type else None,
        "size_bytes": _int(raw.get("size")),
        "url": url,
        "inline": raw.get("inline") is True,
    }


def attachment_rows(raw_comments: list[dict[str, Any]], ticket_id: int) -> list[dict[str, Any]]:
    """Every comment's attachments, in the comments' order."""
    rows = []
    for comment in raw_comments:
        comment_id = _int(comment.get("id"))
        listing = comment.get("attachments")
        if comment_id is None or not isinstance(listing, list):
            continue
        found = (attachment_row(a, comment_id, ticket_id) for a in listing)
        rows.extend(row for row in found if row is not None)
    return rows


def customer_attachments(
    comments: Sequence[store.StoredComment], attachments: Sequence[store.StoredAttachment]
) -> tuple[Attachment, ...]:
    """What the customer attached to their public comments, the newest comment's first (an
    internal note's files never reach a draft, the card or a past case)."""
    order = {
        c.comment_id: position
        for position, c in enumerate(reversed(comments))
        if c.public and c.author_role == "customer"
    }
    theirs = sorted(
        (a for a in attachments if a.comment_id in order),
        key=lambda a: (order[a.comment_id], a.attachment_id),
    )
    return tuple(_attachment(a) for a in theirs)


def _attachment(a: store.StoredAttachment) -> Attachment:
    return Attachment(a.file_name, a.content_type, a.size_bytes, a.url, a.inline, "customer")


def attachment_notes(
    comments: Sequence[store.StoredComment], attachments: Sequence[store.StoredAttachment]
) -> dict[int, str]:
    """Per customer comment, " (customer attached: logs.txt (text, 3 KB))" for a past case's
    training copy, PII redacted like the comment (a file name may carry a name)."""
    mine = {c.comment_id for c in comments if c.public and c.author_role == "customer"}
    by_comment: dict[int, list[Attachment]] = {}
    for a in attachments:
        if a.comment_id in mine and not a.inline:
            by_comment.setdefault(a.comment_id, []).append(_attachment(a))
    return {
        comment_id: redact(f" (customer attached: {attached.summary(files, sep=', ')})")
        for comment_id, files in by_comment.items()
    }


@dataclass(frozen=True)
class AttachmentFiles:
    """Where downloaded attachments go (``data_dir/attachments``) and the largest fetched."""

    folder: Path
    max_bytes: int

    @classmethod
    def configured(cls, settings: Settings) -> AttachmentFiles | None:
        """Per AITL_ZENDESK_STORE_ATTACHMENTS: None (the default) keeps listings only."""
        if not settings.zendesk_store_attachments:
            return None
        return cls(settings.data_dir / "attachments", settings.zendesk_attachment_max_bytes)

    def fetch_missing(self, db: Database, client: ZendeskClient, ticket_id: int) -> int:
        """Download the ticket's attachments not stored yet; returns how many were stored.
        Runs outside the sync's transaction: a slow download never holds database locks."""
        with db.connection() as conn:
            wanted = [a for a in store.attachments(conn, ticket_id) if a.stored_path is None]
        stored = 0
        for attachment in wanted:
            path = self._fetch(client, attachment)
            if path is not None:
                with db.connection() as conn:
                    store.set_attachment_path(conn, attachment.attachment_id, str(path))
                stored += 1
        return stored

    def _fetch(self, client: ZendeskClient, attachment: store.StoredAttachment) -> Path | None:
        name = f"attachment {attachment.attachment_id} of ticket {attachment.ticket_id}"
        if attachment.url is None:
            return None  # listed by name only: nothing to fetch
        if attachment.size_bytes is not None and attachment.size_bytes > self.max_bytes:
            log.info("%s not downloaded: %s bytes, over the cap", name, attachment.size_bytes)
            return None
        try:
            data = client.download_attachment(attachment.url, max_bytes=self.max_bytes)
            path = self.folder / str(attachment.ticket_id) / _file_name(attachment)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            partial.write_bytes(data)
            partial.replace(path)
        except (exceptions.ConnectorError, OSError) as exc:
            log.warning("%s not downloaded, kept listed: %s", name, exc)
            return None
        return path


def _file_name(attachment: store.StoredAttachment) -> str:
    """``<id>-<name>`` with only safe characters: the name comes from the customer."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", attachment.file_name).strip("._")[:100]
    return f"{attachment.attachment_id}-{safe or 'file'}"
