"""Read knowledge articles from a folder of Markdown, HTML, plain text or JSONL files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import lxml.html.defs

from rag import exceptions, links
from rag.models import SourceDocument

MARKDOWN = {".md", ".markdown"}
HTML = {".html", ".htm"}
TEXT = {".txt"}
JSONL = {".jsonl"}
SUPPORTED = MARKDOWN | HTML | TEXT | JSONL


@dataclass(frozen=True)
class LoadFailure:
    """A file or record that could not be read; ingest reports it and goes on."""

    location: str
    error: exceptions.DocumentError


def discover(path: Path) -> list[Path]:
    """Every non-hidden file under ``path`` (or ``path`` itself), sorted for stable runs."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise exceptions.DocumentError(f"{path}: no such file or folder")
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def file_external_id(file: Path, root: Path) -> str:
    """A file's document id: its path under the ingested folder."""
    return file.relative_to(root).as_posix() if file != root else file.name


def load_file(
    file: Path, *, root: Path, source: str, max_bytes: int
) -> Iterator[SourceDocument | LoadFailure]:
    """The documents in one file; a bad file or record yields a failure, never raises."""
    location = str(file)
    try:
        text = _read_text(file, max_bytes)
        if file.suffix.lower() in JSONL:
            yield from _jsonl(text, location=location, source=source, max_bytes=max_bytes)
            return
        external_id = file_external_id(file, root)
        updated = datetime.fromtimestamp(file.stat().st_mtime, tz=UTC)
        yield _document(file, text, source=source, external_id=external_id, updated_at=updated)
    except exceptions.DocumentError as exc:
        yield LoadFailure(location, exc)


def _read_text(file: Path, max_bytes: int) -> str:
    if file.suffix.lower() not in SUPPORTED:
        raise exceptions.UnsupportedFileType(
            f"{file}: unsupported file type {file.suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(SUPPORTED))}"
        )
    size = file.stat().st_size
    if size > max_bytes and file.suffix.lower() not in JSONL:
        raise exceptions.DocumentTooLarge(
            f"{file}: {size} bytes is over AITL_MAX_DOCUMENT_BYTES={max_bytes}"
        )
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise exceptions.UndecodableText(
            f"{file}: not UTF-8 text (invalid byte at offset {exc.start}); re-save it as UTF-8"
        ) from exc


def _document(
    file: Path, text: str, *, source: str, external_id: str, updated_at: datetime
) -> SourceDocument:
    suffix = file.suffix.lower()
    if suffix in HTML:
        title, body = html_to_text(text, fallback=file.stem)
    else:
        title, body = _titled_text(text, fallback=file.stem, markdown=suffix in MARKDOWN)
    if not body.strip():
        raise exceptions.EmptyDocument(f"{file}: the document has no text")
    return SourceDocument(
        source=source,
        external_id=external_id,
        title=title,
        body=body,
        updated_at=updated_at,
        metadata={"path": external_id, "format": suffix.lstrip(".")},
    )


def _titled_text(text: str, *, fallback: str, markdown: bool) -> tuple[str, str]:
    """Title from the first line (a Markdown ``# `` heading, or a text file's first line)."""
    lines = text.strip().splitlines()
    if not lines:
        return _humanise(fallback), ""
    first = lines[0].strip()
    if markdown and first.startswith("# "):
        return first[2:].strip(), "\n".join(lines[1:]).strip()
    if not markdown and len(lines) > 1 and len(first) <= 200:
        return first, "\n".join(lines[1:]).strip()
    return _humanise(fallback), text.strip()


def html_to_text(text: str, *, fallback: str, base_url: str | None = None) -> tuple[str, str]:
    """Title and text of an HTML page, one line per block, links kept as ``[text](url)``.

    Links are made absolute against ``base_url`` (a Help Center article's own URL, so an
    in-page ``#anchor`` points into that article). Without a base (a file on disk) a
    relative link has nowhere a customer could open it, so only its text is kept; so are the
    texts of links to anything but http(s) and mailto.
    """
    if not text.strip():
        return _humanise(fallback), ""
    try:
        tree = lxml.html.document_fromstring(text)
    except Exception as exc:  # lxml raises ParserError/ValueError on garbage
        raise exceptions.EmptyDocument(f"unparseable HTML: {exc}") from exc
    for bad in tree.xpath("//script|//style|//noscript"):
        bad.drop_tree()
    heading = tree.findtext(".//title") or tree.findtext(".//h1") or _humanise(fallback)
    for h1 in tree.xpath("//h1")[:1]:
        if h1.text_content().strip() == heading.strip():
            h1.drop_tree()
    body_el = tree.find("body")
    root = body_el if body_el is not None else tree
    _links_as_markdown(root, base_url)
    _blocks_on_lines(root)
    lines = [" ".join(line.split()) for line in "".join(root.itertext()).splitlines()]
    return heading.strip(), "\n".join(line for line in lines if line)


_CELLS = frozenset({"td", "th"})
_SECTIONS = {
    "article",
    "aside",
    "figcaption",
    "figure",
    "footer",
    "header",
    "main",
    "nav",
    "section",
}
_BLOCKS = (lxml.html.defs.block_tags - _CELLS - {"del", "ins"}) | _SECTIONS


def _links_as_markdown(root: lxml.html.HtmlElement, base_url: str | None) -> None:
    """Each ``<a href>`` becomes the text ``[text](url)`` on one line, or its bare text when
    the URL is unsafe or cannot be made absolute."""
    for anchor in list(root.iter("a")):
        href = anchor.get("href")
        if href is None:
            continue
        url = links.safe_url(href.strip(), base_url)
        text = " ".join(anchor.text_content().split())
        if not text:
            text = next((img.get("alt", "") for img in anchor.iter("img")), "").strip()
        tail = anchor.tail
        anchor.clear()
        anchor.text = links.markdown(text, url) if url else text
        anchor.tail = tail


def _blocks_on_lines(root: lxml.html.HtmlElement) -> None:
    """Line breaks where a browser breaks lines (blocks, ``<br>``), spaces between table
    cells, and the source's own line wrapping folded into spaces (but in ``<pre>``)."""
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if not any(a.tag == "pre" for a in el.iterancestors()) and el.tag != "pre":
            el.text = _spaces(el.text)
        if not any(a.tag == "pre" for a in el.iterancestors()):
            el.tail = _spaces(el.tail)
        if el.tag in _BLOCKS or el.tag == "br":
            el.tail = "\n" + (el.tail or "")
        if el.tag in _BLOCKS:
            el.text = "\n" + (el.text or "")
        elif el.tag in _CELLS:
            el.tail = " " + (el.tail or "")


def _spaces(text: str | None) -> str | None:
    return re.sub(r"\s+", " ", text) if text else text


def _jsonl(text: str, *, location: str, source: str, max_bytes: int):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{location}:{number}"
        try:
            yield _record(line, where=where, source=source, max_bytes=max_bytes)
        except exceptions.DocumentError as exc:
            yield LoadFailure(where, exc)


def _record(line: str, *, where: str, source: str, max_bytes: int) -> SourceDocument:
    if len(line.encode()) > max_bytes:
        raise exceptions.DocumentTooLarge(f"{where}: record is over AITL_MAX_DOCUMENT_BYTES")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise exceptions.MalformedRecord(f"{where}: invalid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise exceptions.MalformedRecord(f"{where}: each line must be a JSON object")
    missing = [k for k in ("id", "title", "body") if not isinstance(record.get(k), str | int)]
    if missing:
        raise exceptions.MalformedRecord(f"{where}: missing or non-text field(s) {missing}")
    if not str(record["body"]).strip():
        raise exceptions.EmptyDocument(f"{where}: the document has no text")
    return SourceDocument(
        source=source,
        external_id=str(record["id"]),
        title=str(record["title"]).strip() or str(record["id"]),
        body=str(record["body"]).strip(),
        url=record.get("url") if isinstance(record.get("url"), str) else None,
        locale=str(record.get("locale") or "en"),
        updated_at=_timestamp(record.get("updated_at"), where),
        metadata=record.get("metadata") if isinstance(record.get("metadata"), dict) else {},
    )


def _timestamp(value: object, where: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise exceptions.MalformedRecord(f"{where}: updated_at {value!r} is not ISO 8601") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _humanise(stem: str) -> str:
    return stem.replace("-", " ").replace("_", " ").strip().capitalize() or "Untitled"
