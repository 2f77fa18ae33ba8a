"""What a ticket's attachments are, in words: a coarse kind and a readable size for the card
and the prompt, and which kinds of file the customer already sent, so no draft asks for one
again. Pure functions of ``rag.models.Attachment``; the connector, the drafters and the bot
all describe attachments the same way."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from rag.models import Attachment

# content type → the coarse kind the card shows; types not here (octet-stream, ...) show none
_KIND_BY_TYPE = {
    "application/pdf": "PDF",
    "application/msword": "document",
    "application/rtf": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.oasis.opendocument.text": "document",
    "application/vnd.ms-excel": "spreadsheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "spreadsheet",
    "application/vnd.oasis.opendocument.spreadsheet": "spreadsheet",
    "text/csv": "spreadsheet",
    "application/vnd.ms-powerpoint": "presentation",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "presentation",
    "application/zip": "archive",
    "application/x-zip-compressed": "archive",
    "application/gzip": "archive",
    "application/x-gzip": "archive",
    "application/x-tar": "archive",
    "application/x-7z-compressed": "archive",
    "application/vnd.rar": "archive",
    "application/x-rar-compressed": "archive",
    "application/json": "text",
    "application/xml": "text",
    "message/rfc822": "email",
}
_KIND_BY_FAMILY = {"image": "image", "text": "text", "video": "video", "audio": "audio"}


def kind(content_type: str | None) -> str | None:
    """The coarse kind of a content type ("image", "PDF", "text", ...); None when unknown."""
    if not content_type:
        return None
    mime = content_type.split(";")[0].strip().lower()
    family = mime.partition("/")[0]
    return _KIND_BY_TYPE.get(mime) or _KIND_BY_FAMILY.get(family)


def human_size(size_bytes: int | None) -> str | None:
    """A size as people read it: "512 bytes", "3 KB", "1.2 MB"."""
    if size_bytes is None or size_bytes < 0:
        return None
    if size_bytes < 1024:
        return f"{size_bytes} bytes"
    value = float(size_bytes)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    if unit == "KB" or value >= 10:
        return f"{max(1, round(value))} {unit}"
    return f"{value:.1f} {unit}"


def describe(attachment: Attachment) -> str:
    """The attachment in words, "screenshot.png (image, 240 KB)"; of no known type: its name
    only, since a kind guessed wrong would mislead the agent and the drafter."""
    found = kind(attachment.content_type)
    if found is None:
        return attachment.file_name
    size = human_size(attachment.size_bytes)
    details = f"{found}, {size}" if size else found
    return f"{attachment.file_name} ({details})"


def listed(attachments: Iterable[Attachment]) -> tuple[Attachment, ...]:
    """The attachments Zendesk lists: inline ones (pasted into the message, or an email
    signature's logo) are part of the message body, not files the customer sent."""
    return tuple(a for a in attachments if not a.inline)


def summary(attachments: Sequence[Attachment], cap: int | None = None, sep: str = " · ") -> str:
    """The attachments described one after the other, at most ``cap`` then "and N more"."""
    shown = attachments if cap is None else attachments[:cap]
    text = sep.join(describe(a) for a in shown)
    hidden = len(attachments) - len(shown)
    return f"{text}{sep}and {hidden} more" if hidden else text


# --- what the customer already sent, and sentences that ask for it -----------------------

# each kind of file a reply may ask for, and the words that name it in a sentence
_ASKED_AS = {
    "image": r"screen ?shots?|screen ?captures?|screen ?grabs?|photos?|photographs?|pictures?"
    r"|images?|pics?",
    "video": r"videos?|screen recordings?|recordings?",
    "log": r"log ?files?|logs?(?!\s+(?:in|into|on|out|off)\b)",
    "invoice": r"invoices?|receipts?|proof of purchase",
    "pdf": r"pdfs?",
    "document": r"documents?",
}
_NOUN = {k: re.compile(rf"\b(?:{words})\b", re.IGNORECASE) for k, words in _ASKED_AS.items()}
_ASK = re.compile(
    r"\b(send|attach|upload|share|provide|include|forward|e-?mail|submit|reply with)\b",
    re.IGNORECASE,
)
# "we will send you an invoice": our own promise, not a request to the customer
_OUR_PROMISE = re.compile(
    r"\b(we|i)(\s+(will|can|shall|would|may|then|also|just))*('ll)?\s+"
    r"(send|attach|upload|share|provide|include|forward|e-?mail|submit)\b",
    re.IGNORECASE,
)
_EXTENSIONS = {
    "image": {"png", "jpg", "jpeg", "gif", "bmp", "heic", "heif", "webp", "tif", "tiff"},
    "video": {"mp4", "mov", "avi", "webm", "mkv", "m4v"},
    "log": {"log"},
    "pdf": {"pdf"},
    "document": {"pdf", "doc", "docx", "odt", "rtf"},
}
_NAME_WORDS = {
    "image": {"screenshot", "screenshots", "screen", "capture", "photo", "img", "image", "pic"},
    "log": {"log", "logs", "logfile"},
    "invoice": {"invoice", "receipt", "rechnung", "factura", "facture"},
}
_KINDS_OF_KIND = {
    "image": {"image"},
    "video": {"video"},
    "PDF": {"pdf", "document"},
    "document": {"document"},
}


def sent_kinds(attachments: Iterable[Attachment]) -> frozenset[str]:
    """The kinds of file these attachments are, by content type and by name ("image", "log",
    "invoice", "pdf", "document", "video"): what a reply must not ask for again."""
    found: set[str] = set()
    for attachment in attachments:
        found |= _KINDS_OF_KIND.get(kind(attachment.content_type) or "", set())
        path = PurePosixPath(attachment.file_name.lower())
        extension = path.suffix.lstrip(".")
        words = set(re.findall(r"[a-z]+", path.stem))
        found |= {k for k, extensions in _EXTENSIONS.items() if extension in extensions}
        found |= {k for k, names in _NAME_WORDS.items() if words & names}
    return frozenset(found)


def asks_for_sent(sentence: str, kinds: frozenset[str]) -> bool:
    """Whether ``sentence`` asks the customer to send a kind of file in ``kinds``."""
    if not kinds or not _ASK.search(sentence) or _OUR_PROMISE.search(sentence):
        return False
    return any(_NOUN[k].search(sentence) for k in kinds if k in _NOUN)
