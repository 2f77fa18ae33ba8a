"""Markdown links (``[text](url)``) as knowledge and drafts carry them.

Articles keep their links so a draft can point the customer to the exact page. Every step
that cuts or splits text (chunking, sentence splitting, previews) must keep a link whole:
``protect`` swaps each link for one private-use character, which no splitter can cut, and
``restore`` swaps it back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
# text without brackets or line breaks, a URL without spaces or parentheses (``markdown``
# percent-encodes those), so a link never spans lines and a bracket in prose is not a link
LINK = re.compile(r"\[([^\[\]\n]*)\]\(((?:https?|mailto):[^()\s]+)\)", re.IGNORECASE)
BARE_URL = re.compile(r"(?:https?://|mailto:)[^\s<>()]+", re.IGNORECASE)
_URL_ESCAPES = {" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E", '"': "%22", "|": "%7C"}
_PRIVATE_USE = range(0xE000, 0xF900)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_url(href: str | None, base: str | None = None) -> str | None:
    """``href`` made absolute against ``base``; None when it cannot be opened by a customer
    (no base for a relative link) or is not http(s)/mailto (``javascript:``, ``data:``...)."""
    if not href:
        return None
    href = _CONTROL.sub("", href.strip())  # as browsers do: "java\tscript:" is javascript:
    if not href:
        return None
    url = urljoin(base, href) if base else href
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES:
        return None
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return None
    return "".join(_URL_ESCAPES.get(c, c) for c in url)


def markdown(text: str, url: str) -> str:
    """``[text](url)``; the URL itself (without ``mailto:``) when the text is empty."""
    text = " ".join(text.split()).replace("[", "(").replace("]", ")")
    if not text:
        text = url.removeprefix("mailto:") if url.lower().startswith("mailto:") else url
    return f"[{text}]({url})"


@dataclass(frozen=True)
class Link:
    text: str
    url: str
    start: int
    end: int

    @property
    def markdown(self) -> str:
        return f"[{self.text}]({self.url})"


def find(text: str) -> Iterator[Link]:
    for match in LINK.finditer(text):
        yield Link(match.group(1), match.group(2), match.start(), match.end())


def has_links(text: str) -> bool:
    return LINK.search(text) is not None


def as_text(text: str) -> str:
    """Each link replaced by its text."""
    return LINK.sub(lambda m: m.group(1), text)


def plain(text: str) -> str:
    """``text`` as a reader sees it without the URLs: each link by its text, bare URLs
    dropped. Two renderings of one comment (Markdown, Zendesk's ``plain_body``) compare
    equal this way."""
    return BARE_URL.sub("", as_text(text))


@dataclass(frozen=True)
class Protected:
    """Text whose links each stand as one character; ``links`` maps it back."""

    text: str
    links: dict[str, str]

    def restore(self, text: str) -> str:
        return "".join(self.links.get(c, c) for c in text) if self.links else text

    def weight(self, text: str) -> int:
        """The length ``text`` will have once its links are restored."""
        if not self.links:
            return len(text)
        return len(text) + sum(len(self.links[c]) - 1 for c in text if c in self.links)


def protect(text: str) -> Protected:
    """Each link swapped for a private-use character the text does not already hold."""
    if not has_links(text):
        return Protected(text, {})
    free = (chr(code) for code in _PRIVATE_USE if chr(code) not in text)
    links: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        mark = next(free, None)
        if mark is None:  # thousands of links in one text: the rest stay as they are
            return match.group(0)
        links[mark] = match.group(0)
        return mark

    return Protected(LINK.sub(swap, text), links)


def cut(text: str, limit: int) -> str:
    """The first ``limit`` characters, ending before a link that would be cut in half."""
    if len(text) <= limit:
        return text
    for link in find(text):
        if link.start < limit < link.end:
            return text[: link.start].rstrip()
    return text[:limit]


def to_html(text: str) -> str:
    """Paragraphs of ``text`` as HTML: everything escaped, its links as ``<a href>``."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join(f"<p>{_inline_html(p.strip())}</p>" for p in paragraphs)


def _inline_html(text: str) -> str:
    out, position = [], 0
    for link in find(text):
        out.append(html.escape(text[position : link.start]))
        url = html.escape(link.url, quote=True)
        out.append(f'<a href="{url}">{html.escape(link.text)}</a>')
        position = link.end
    out.append(html.escape(text[position:]))
    return "".join(out).replace("\n", "<br>")
