"""Liquid placeholders in draft text: the common ones rendered, none ever left raw.

Zendesk macros keep their Liquid in the knowledge base (``{{ticket.requester.first_name}}``,
``{{ current_user.name | capitalize }}``, ``{% if ticket.priority == "urgent" %}…{% endif %}``),
so a draft quoting a macro, or an LLM imitating one, can carry it. A draft is text an agent may
send as is, so every draft passes through :func:`render`, by this rule:

- A ``{{ name | filter }}`` whose name has a value (``Ticket.placeholders``) is replaced by the
  value, through the filters Liquid defines that we know: capitalize, upcase, downcase, strip,
  lstrip, rstrip, append, prepend, default. ``default`` fills a known name that has no value.
- Anything else cannot be rendered: a name with no value, a name we do not know, a filter we do
  not know, any ``{% tag %}`` (a block tag with its whole block, up to its end tag), and a
  stray ``{{``/``{%`` a chunk boundary cut off. It is removed together with the sentence it sits
  in (a list item, or a line with no sentence break: the whole item or line), and listed in
  ``Rendered.removed`` so the agent is shown what was left out.
- A paragraph is never emptied that way: when every sentence of a paragraph would go, the
  paragraph stays and each gap becomes a visible marker, ``[‹customer's order number›]``, that
  the agent must fill. Write-back refuses a body that still holds a marker (:func:`markers`) or
  a placeholder it cannot render.

Values are pasted as plain text: braces in a value (a requester named ``{{x}}``) are dropped,
so a value never brings a placeholder of its own. Pure text, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rag.extractive import ABBREVIATION, is_item

# the names the connector fills from the ticket (connectors/placeholder_values.py); a known
# name without a value is "missing" (``default`` may fill it), any other name is unknown
REQUESTER_NAME = "ticket.requester.name"
REQUESTER_FIRST_NAME = "ticket.requester.first_name"
TICKET_ID = "ticket.id"
TICKET_TITLE = "ticket.title"
TICKET_URL = "ticket.url"
TICKET_LINK = "ticket.link"
ASSIGNEE_NAME = "ticket.assignee.name"
ASSIGNEE_FIRST_NAME = "ticket.assignee.first_name"
AGENT_NAME = "current_user.name"
AGENT_FIRST_NAME = "current_user.first_name"
RATING_URL = "satisfaction.rating_url"
KNOWN = frozenset(
    {
        REQUESTER_NAME,
        REQUESTER_FIRST_NAME,
        TICKET_ID,
        TICKET_TITLE,
        TICKET_URL,
        TICKET_LINK,
        ASSIGNEE_NAME,
        ASSIGNEE_FIRST_NAME,
        AGENT_NAME,
        AGENT_FIRST_NAME,
        RATING_URL,
    }
)

_OUTPUT = re.compile(r"\{\{-?(?P<expr>.*?)-?\}\}", re.S)
_TAG = re.compile(r"\{%-?\s*(?P<word>\w*)(?P<rest>.*?)-?%\}", re.S)
_BLOCKS = frozenset({"if", "unless", "case", "for", "tablerow", "capture", "comment", "raw"})
_NAME = re.compile(r"^[A-Za-z_][\w-]*(?:\.[\w-]+)*$")
_FILTER = re.compile(r"^\s*(?P<name>\w+)\s*(?::\s*(?P<args>.*?))?\s*$", re.S)
_STRING = re.compile(r"""^\s*(?:"(?P<d>[^"]*)"|'(?P<s>[^']*)')\s*$""")
_MARKER = re.compile(r"\[‹[^›\]\n]*›\]")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?![a-z])")
_LINK = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)")
_PARAGRAPH = re.compile(r"(\n[ \t]*\n\s*)")
# private-use characters stand in for each placeholder while sentences are cut
_KEEP, _DROP = "\ue000", "\ue001"
_SLOT = re.compile(f"[{_KEEP}{_DROP}](\\d+)[{_KEEP}{_DROP}]")
_KEPT = re.compile(f"{_KEEP}(\\d+){_KEEP}")
_DROPPED = re.compile(f"{_DROP}(\\d+){_DROP}")
# what is left of a placeholder a chunk boundary cut in half, with the word it is glued to
_FRAGMENT = re.compile(rf"[^\s{_KEEP}{_DROP}]*(?:\{{\{{|\{{%|\}}\}}|%\}})[^\s{_KEEP}{_DROP}]*")


@dataclass(frozen=True)
class Rendered:
    """A text with its placeholders dealt with, and what was done with each."""

    text: str
    rendered: tuple[str, ...] = ()  # names filled in: "ticket.requester.first_name"
    removed: tuple[str, ...] = ()  # as written, whose sentence was left out: "{{dc.offer}}"
    gaps: tuple[str, ...] = ()  # markers left for the agent to fill: "[‹customer's phone›]"

    @property
    def changed(self) -> bool:
        return bool(self.rendered or self.removed or self.gaps)

    def record(self) -> dict[str, list[str]]:
        """What a draft's producer keeps of it (and the card shows)."""
        return {
            "rendered": list(self.rendered),
            "removed": list(self.removed),
            "gaps": list(self.gaps),
        }


@dataclass(frozen=True)
class _Slot:
    raw: str  # as written
    value: str | None  # None: cannot be rendered
    name: str | None = None  # the placeholder's name, when it has one
    label: str = ""  # what the gap marker asks for


def render(text: str, values: dict[str, str] | None = None) -> Rendered:
    """``text`` with known placeholders filled from ``values`` and the rest removed (see the
    module's rule); a text without ``{{``, ``{%``, ``}}`` or ``%}`` comes back unchanged."""
    if not any(mark in text for mark in ("{{", "{%", "}}", "%}")):
        return Rendered(text)
    values = values or {}
    slots: list[_Slot] = []
    marked = _mark(text, values, slots)
    paragraphs = _PARAGRAPH.split(marked)
    out: list[str] = []
    removed: list[str] = []
    gaps: list[str] = []
    for i, part in enumerate(paragraphs):
        if i % 2:  # the blank lines between paragraphs, kept as they were
            out.append(part)
            continue
        kept, dropped = _cut(part, slots)
        if dropped and not re.search(r"\w", _SLOT.sub("", kept)):
            kept = _DROPPED.sub(lambda m: _gap(slots[int(m.group(1))], gaps), part)
        else:
            removed += dropped
        out.append(kept)
    joined = "".join(out)
    rendered = [slots[int(i)].name or "" for i in _KEPT.findall(joined)]
    filled = _KEPT.sub(lambda m: slots[int(m.group(1))].value or "", joined)
    return Rendered(
        text=_tidy(filled, text),
        rendered=_unique(rendered),
        removed=_unique(removed),
        gaps=_unique(gaps),
    )


def markers(text: str) -> tuple[str, ...]:
    """The gap markers still in ``text`` (an agent's edit may keep one it did not fill)."""
    return _unique(_MARKER.findall(text))


def leftovers(text: str, values: dict[str, str] | None = None) -> tuple[str, ...]:
    """What in ``text`` cannot go out as is, each as written: placeholders that cannot be
    rendered from ``values``, tags, fragments, and gap markers the agent did not fill."""
    slots: list[_Slot] = []
    _mark(text, values or {}, slots)
    return _unique([*(s.raw for s in slots if s.value is None), *markers(text)])


# --- marking: each placeholder becomes a slot that holds no space and no sentence end ------


def _mark(text: str, values: dict[str, str], slots: list[_Slot]) -> str:
    def slot(item: _Slot) -> str:
        slots.append(item)
        fence = _KEEP if item.value is not None else _DROP
        return f"{fence}{len(slots) - 1}{fence}"

    text = _blocks(text, lambda raw, label: slot(_Slot(raw, None, label=label)))
    text = _OUTPUT.sub(lambda m: slot(_output(m.group(0), m.group("expr"), values)), text)
    return _FRAGMENT.sub(
        lambda m: slot(_Slot(m.group(0), None, label="a placeholder cut short")), text
    )


def _blocks(text: str, slot) -> str:
    """Every tag, a block tag together with its block up to the matching end tag."""
    tags = list(_TAG.finditer(text))
    spans: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tags):
        tag, word = tags[i], tags[i].group("word")
        end = _matching_end(tags, i) if word in _BLOCKS else None
        last = tags[end] if end is not None else tag
        spans.append((tag.start(), last.end(), _tag_label(tag)))
        i = (end if end is not None else i) + 1
    for start, stop, label in reversed(spans):
        raw = text[start:stop]
        opening = _TAG.match(raw)
        shown = _short(opening.group(0) if opening else raw)
        text = text[:start] + slot(shown, label) + text[stop:]
    return text


def _matching_end(tags: list[re.Match[str]], opened: int) -> int | None:
    word, depth = tags[opened].group("word"), 0
    for j in range(opened + 1, len(tags)):
        other = tags[j].group("word")
        if other == word:
            depth += 1
        elif other == f"end{word}":
            if depth == 0:
                return j
            depth -= 1
    return None


def _output(raw: str, expr: str, values: dict[str, str]) -> _Slot:
    name, *filters = _split(expr, "|")
    name = name.strip()
    label = _humanise(name) if _NAME.match(name) else "a placeholder"
    if not _NAME.match(name):
        return _Slot(raw, None, label=label)
    value: str | None = values.get(name) or None
    if value is None and name not in KNOWN:
        return _Slot(raw, None, name=name, label=label)
    for text in filters:
        value = _filter(value, text)
        if value is _UNRENDERABLE:
            return _Slot(raw, None, name=name, label=label)
    value = _defang(str(value or ""))
    if not value.strip():
        return _Slot(raw, None, name=name, label=label)
    return _Slot(raw, value, name=name, label=label)


_UNRENDERABLE: Any = object()


def _filter(value: str | None, text: str) -> Any:
    match = _FILTER.match(text)
    if not match:
        return _UNRENDERABLE
    name, args_text = match.group("name"), match.group("args")
    args = [_string(a) for a in _split(args_text, ",")] if args_text else []
    if any(a is None for a in args):
        return _UNRENDERABLE
    if name == "default":
        return value or (args[0] if args else _UNRENDERABLE)
    if value is None:
        return None  # still missing; a later ``default`` may fill it
    simple = {
        "capitalize": str.capitalize,
        "upcase": str.upper,
        "downcase": str.lower,
        "strip": str.strip,
        "lstrip": str.lstrip,
        "rstrip": str.rstrip,
    }
    if name in simple and not args:
        return simple[name](value)
    if name == "append" and len(args) == 1:
        return value + args[0]
    if name == "prepend" and len(args) == 1:
        return args[0] + value
    return _UNRENDERABLE


def _string(text: str) -> str | None:
    """A quoted Liquid string's text; None for anything else (a variable, a number)."""
    match = _STRING.match(text)
    if match is None:
        return None
    return match.group("d") if match.group("d") is not None else match.group("s")


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside quotes."""
    parts, current, quote = [], [], ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == sep:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


# --- cutting: sentences that hold a slot that cannot be rendered are left out ---------------


def _cut(paragraph: str, slots: list[_Slot]) -> tuple[str, list[str]]:
    """The paragraph without the units (sentences, list items) that hold a dropped slot,
    and the raw placeholders those units held."""
    if _DROP not in paragraph:
        return paragraph, []
    lines, dropped = [], []
    for line in paragraph.split("\n"):
        if _DROP not in line:
            lines.append(line)
            continue
        units = [line] if is_item(line.lstrip()) else _sentences(line)
        kept = []
        for unit in units:
            bad = [slots[int(i)].raw for i in _dropped_slots(unit)]
            if bad:
                dropped += bad
            else:
                kept.append(unit)
        if kept:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + " ".join(u.strip() for u in kept))
    return "\n".join(lines), dropped


def _dropped_slots(unit: str) -> list[str]:
    return re.findall(f"{_DROP}(\\d+){_DROP}", unit)


def _sentences(line: str) -> list[str]:
    """A line cut after ``.``/``!``/``?`` (not after "e.g.", not inside a Markdown link)."""
    links = [m.span() for m in _LINK.finditer(line)]
    units, start = [], 0
    for match in _BOUNDARY.finditer(line):
        at = match.start()
        if any(a <= at < b for a, b in links) or ABBREVIATION.search(line[start:at]):
            continue
        units.append(line[start : match.end()].rstrip())
        start = match.end()
    units.append(line[start:])
    return [u for u in units if u.strip()]


# --- gaps: what the agent is asked to fill --------------------------------------------------


def _gap(slot: _Slot, gaps: list[str]) -> str:
    marker = f"[‹{slot.label}›]"
    gaps.append(marker)
    return marker


_OWNERS = (
    ("ticket.requester.organization.", "customer's organization's "),
    ("ticket.organization.", "organization's "),
    ("ticket.requester.", "customer's "),
    ("ticket.assignee.", "assignee's "),
    ("current_user.", "your "),
    ("satisfaction.", "satisfaction "),
    ("ticket.", "ticket's "),
    ("dc.", ""),
)


def _humanise(name: str) -> str:
    """``ticket.requester.phone`` → "customer's phone": what a gap marker asks for."""
    for prefix, owner in _OWNERS:
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            return owner + rest.replace(".", " ").replace("_", " ")
    return name.replace(".", " ").replace("_", " ")


def _tag_label(tag: re.Match[str]) -> str:
    words = " ".join(f"{tag.group('word')}{tag.group('rest')}".split())
    return _short(f"text for: {words}" if words else "conditional text", 60)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _defang(value: str) -> str:
    """A value never brings a placeholder, a tag or a gap marker of its own."""
    for mark in ("{{", "}}", "{%", "%}", _KEEP, _DROP):
        value = value.replace(mark, "")
    return _MARKER.sub("", value)


def _tidy(text: str, original: str) -> str:
    """No trailing spaces, nor blank lines left where a paragraph's sentences were cut."""
    lines = [line.rstrip() if line.strip() else "" for line in text.split("\n")]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    if not original.startswith("\n"):
        tidy = tidy.lstrip("\n")
    return tidy if original.endswith("\n") else tidy.rstrip("\n")


def _unique(items) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)
