"""Block Kit for the ticket thread: the parent message and the card with the two drafts and
the four signals' buttons. Pure functions of stored data; ``slack_sdk.models`` checks Slack's
limits when the blocks are turned into dicts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import actions
from bot.actions import ButtonValue
from flywheel.events import StoredFeedback
from rag import attachments as attached
from rag import links
from rag.models import Attachment, TicketRef
from rag.store import ChunkRef, StoredDraft

PREVIEW_CHARS = 700
SECTION_CHARS = 3000
SNIPPET_CHARS = 160
SNIPPET_MAX = 1000  # rendered, links' URLs included
MAX_SOURCES = 8
MAX_BLOCKS = 50
PREFER_LABELS = {"A": "Prefer A", "B": "Prefer B", "tie": "Tie", "both_bad": "Both bad"}
ADOPT_LABELS = {
    "as_is.A": "Used A as is",
    "as_is.B": "Used B as is",
    "edited.A": "Edited A",
    "edited.B": "Edited B",
    "not_used": "Not used",
}
ANSWER_WORDS = {
    "A": "A is better",
    "B": "B is better",
    "tie": "tie",
    "both_bad": "both bad",
    "as_is": "used as is",
    "edited": "edited",
    "not_used": "not used",
    "relevant": "relevant",
    "not_relevant": "not relevant",
}


@dataclass(frozen=True)
class CardContent:
    """What one card shows: the drafts, their sources, and the answers standing so far."""

    draft_set_id: int
    kind: str
    header: dict[str, Any]
    drafts: Sequence[StoredDraft]
    sources: Sequence[ChunkRef]
    answers: Sequence[StoredFeedback]
    # chunk id → how clicks on similar tickets moved it (the drafts' producer["memory"])
    memory: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


MENTION = re.compile(r"(<@[UW][A-Z0-9]+>)")


def escape_keeping_mentions(text: str) -> str:
    """Escape stored text that may name people as Slack mentions (``<@U123>``), such as a
    model change's reason, so the mentions still render as names."""
    return "".join(
        part if MENTION.fullmatch(part) else escape(part) for part in MENTION.split(text)
    )


def fold(text: str, limit: int) -> tuple[str, bool]:
    """The text cut at a word boundary within ``limit`` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…", True


def fold_escaped(text: str, limit: int, max_escaped: int) -> tuple[str, bool]:
    """Fold, then escape; fold shorter when escaping would pass Slack's limit."""
    while True:
        cut, folded = fold(text, limit)
        escaped = escape(cut)
        if len(escaped) <= max_escaped or limit <= 20:
            return escaped[:max_escaped], folded
        limit //= 2


def mrkdwn(text: str) -> str:
    """Text as Slack mrkdwn: escaped, its Markdown links (http(s), mailto) as ``<url|text>``."""
    out, position = [], 0
    for found in links.find(text):
        out += [escape(text[position : found.start]), _slack_link(found)]
        position = found.end
    out.append(escape(text[position:]))
    return "".join(out)


def _slack_link(found: links.Link) -> str:
    url = escape(found.url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E"))
    return f"<{url}|{escape(found.text.replace('|', '/')) or url}>"


def fold_mrkdwn(text: str, limit: int, max_chars: int) -> tuple[str, bool]:
    """``fold_escaped`` for text that may hold links: a link counts as one character of the
    fold and is kept whole or left out, never cut; rendered by ``mrkdwn``."""
    protected, visible = links.protect(text), limit
    while True:
        cut, folded = fold(protected.text, visible)
        rendered = mrkdwn(protected.restore(cut))
        if len(rendered) <= max_chars:
            return rendered, folded
        if visible <= 20:  # links too long for the room: their texts only
            return fold_escaped(links.as_text(text), limit, max_chars)
        visible //= 2


def mrkdwn_parts(text: str, size: int) -> list[str]:
    """``text`` rendered by ``mrkdwn`` in parts of at most ``size`` characters, never cutting
    an ``&amp;``-style entity or a link (a link longer than a part gives its text only)."""
    atoms: list[str] = []
    position = 0
    for found in links.find(text):
        atoms += [escape(c) for c in text[position : found.start]]
        rendered = _slack_link(found)
        atoms += [rendered] if len(rendered) <= size else [escape(c) for c in found.text]
        position = found.end
    atoms += [escape(c) for c in text[position:]]
    parts, current = [], ""
    for atom in atoms:
        if current and len(current) + len(atom) > size:
            parts.append(current)
            current = ""
        current += atom
    return [*parts, current] if current else parts


def link(url: str | None, title: str) -> str:
    title = escape(title.replace("|", "/"))
    return f"<{url}|{title}>" if url and url.startswith(("http://", "https://")) else title


def ticket_parent(header: dict[str, Any]) -> tuple[list[Block], str]:
    """The channel message a ticket's thread hangs from, and its notification text."""
    number, subject = header.get("number"), header.get("subject") or "(no subject)"
    title = f"#{number} {subject}"
    heading = link(header.get("url"), title)
    facts = [
        f"*Requester:* {escape(header.get('requester') or 'unknown')}",
        f"*Priority:* {escape(header.get('priority') or 'none')}",
        f"*Status:* {escape(header.get('status') or 'unknown')}",
        f"*Assignee:* {_assignee(header)}",
        *_context_facts(header),
    ]
    blocks: list[Block] = [
        SectionBlock(block_id="aitl.ticket", text=MarkdownTextObject(text=f"*{heading}*")),
        ContextBlock(elements=[MarkdownTextObject(text=" · ".join(facts))]),
    ]
    files = _attachments_line(header)
    if files:
        blocks.append(
            ContextBlock(block_id="aitl.attachments", elements=[MarkdownTextObject(text=files)])
        )
    return blocks, f"Ticket {title}: two draft replies are in the thread"


# the ticket's context as the header carries it, shown only when known
CONTEXT_FACTS = (
    ("channel", "Channel"),
    ("ticket_type", "Type"),
    ("locale", "Locale"),
    ("form_id", "Form"),
    ("brand", "Brand"),
)
MAX_ATTACHMENTS = 5


def _context_facts(header: dict[str, Any]) -> list[str]:
    return [
        f"*{label}:* {escape(str(header[key]))}"
        for key, label in CONTEXT_FACTS
        if header.get(key) not in (None, "")
    ]


def _attachments_line(header: dict[str, Any]) -> str | None:
    """The line "Customer attached: screenshot.png (image, 240 KB) · …" with a link to the
    ticket, where the files are (their own URLs are not posted: customers' files stay in
    Zendesk, whose links may open them without signing in)."""
    files = attached.listed(_header_attachments(header.get("attachments")))
    if not files:
        return None
    text = f"*Customer attached:* {escape(attached.summary(files, MAX_ATTACHMENTS))}"
    url = header.get("url")
    return f"{text} · {link(url, 'open in Zendesk')}" if url else text


def _header_attachments(raw: Any) -> list[Attachment]:
    if not isinstance(raw, list):
        return []
    return [
        Attachment(
            file_name=str(a["file_name"]),
            content_type=a.get("content_type"),
            size_bytes=a.get("size_bytes") if isinstance(a.get("size_bytes"), int) else None,
            url=a.get("url"),
            inline=bool(a.get("inline")),
        )
        for a in raw
        if isinstance(a, dict) and a.get("file_name")
    ]


def _assignee(header: dict[str, Any]) -> str:
    if header.get("assignee_slack"):
        return f"<@{header['assignee_slack']}>"
    return escape(header.get("assignee") or "unassigned")


def card_blocks(content: CardContent) -> tuple[list[Block], str]:
    """The card: drafts, preference, adoption, sources with relevance, missing knowledge."""
    value = ButtonValue(content.draft_set_id).encode()
    blocks: list[Block] = []
    if content.kind == "ask":
        question, _ = fold(content.header.get("question", ""), 500)
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=f"*You asked:* {escape(question)}"))
        )
    for draft in content.drafts:
        blocks.extend(_draft_blocks(draft, content.draft_set_id, content.header.get("url")))
    blocks.append(DividerBlock())
    blocks.extend(_question(content, "preference", "*Which draft is better?*"))
    blocks.append(_buttons("aitl.prefer", _prefer_buttons(content, value)))
    blocks.extend(_question(content, "adoption", "*Did you send one of them?*"))
    blocks.append(_buttons("aitl.adopt", _adopt_buttons(content, value)))
    blocks.extend(_source_blocks(content))
    blocks.append(_buttons("aitl.more", [_missing_button(content, value)]))
    blocks = [*blocks[: MAX_BLOCKS - 1], _footer(content)]
    return blocks, f"Two draft replies for {_subject(content)}"


def _subject(content: CardContent) -> str:
    if content.kind == "ask":
        return "your question"
    return f"ticket #{content.header.get('number')}"


def _draft_blocks(
    draft: StoredDraft, draft_set_id: int, ticket_url: str | None = None
) -> list[Block]:
    preview, folded = fold_mrkdwn(draft.text, PREVIEW_CHARS, SECTION_CHARS - 100)
    style = str(draft.producer.get("variant") or "").lower()
    title = f"*Draft {draft.label}*" + (f" · {escape(style)}" if style else "")
    reused = draft.producer.get("reused_from")
    if isinstance(reused, dict):
        title = f"*Draft {draft.label}* · {_reused_note(reused, ticket_url)}"
    section = SectionBlock(
        block_id=f"aitl.draft.{draft.label}",
        text=MarkdownTextObject(text=f"{title}\n{preview}"),
    )
    if folded:
        section.accessory = ButtonElement(
            text="Show more",
            action_id=f"{actions.SHOW_FULL}.{draft.label}",
            value=ButtonValue(draft_set_id, draft.label).encode(),
        )
    notes = [section]
    if isinstance(reused, dict):
        notes.append(ContextBlock(elements=[MarkdownTextObject(text=REUSED_HINT)]))
    note = _placeholder_note(draft.producer.get("placeholders") or {})
    return [*notes, note] if note else notes


REUSED_HINT = (
    ":recycle: What an agent sent on that ticket, with this ticket's names and numbers in"
    " place of that customer's. Check it answers this one before you send it."
)


def _reused_note(reused: Mapping[str, Any], ticket_url: str | None) -> str:
    """The draft's title, "Reply from a similar ticket (#123, 94% similar)": what agents sent on an
    earlier ticket (flywheel.memory_replies), its names and numbers this ticket's. The number
    links to that ticket where this one's address shows the way (…/tickets/<id>)."""
    ref = TicketRef.parse(str(reused.get("ticket_ref") or ""))
    similar = f"{float(reused.get('similarity') or 0):.0%} similar"
    number = ref.zendesk_id
    if number is None:
        return f"Reply from a similar question ({similar})"
    url = None
    if ticket_url and TICKET_PATH.search(ticket_url):
        url = TICKET_PATH.sub(f"/tickets/{number}", ticket_url)
    return f"Reply from a similar ticket ({link(url, f'#{number}')}, {similar})"


# the ticket's number at the end of its address: another ticket's address is the same with
# that number changed
TICKET_PATH = re.compile(r"/tickets/\d+$")


def _placeholder_note(done: dict[str, list[str]]) -> ContextBlock | None:
    """What the draft's placeholders lost (rag/placeholders.py): the sentences left out, and
    the gaps the agent must fill before it can be posted."""
    parts = []
    if removed := done.get("removed"):
        needed = ", ".join(f"`{escape(r)}`" for r in removed)
        parts.append(f"Left out a sentence that needed {needed}")
    if gaps := done.get("gaps"):
        parts.append(f"Fill in {', '.join(escape(g) for g in gaps)} before sending")
    if not parts:
        return None
    return ContextBlock(elements=[MarkdownTextObject(text=":pencil2: " + ". ".join(parts) + ".")])


def _answers(content: CardContent, kind: str, subject: str = "") -> list[StoredFeedback]:
    return [a for a in content.answers if a.kind == kind and a.subject == subject]


def _question(content: CardContent, kind: str, title: str) -> list[Block]:
    answered = _answers(content, kind)
    who = ", ".join(f"<@{a.agent_id}>: {_word(a)}" for a in answered)
    text = f"{title}   {who}" if who else title
    return [SectionBlock(text=MarkdownTextObject(text=text))]


def _word(answer: StoredFeedback) -> str:
    word = ANSWER_WORDS.get(answer.value, answer.value)
    label = answer.rationale.get("label") if answer.kind == "adoption" else None
    return f"{label} {word}" if label else word


def _buttons(block_id: str, elements: list[ButtonElement]) -> ActionsBlock:
    return ActionsBlock(block_id=block_id, elements=elements)


def _chosen(content: CardContent, kind: str, subject: str = "") -> set[str]:
    return {_answer_key(a) for a in _answers(content, kind, subject)}


def _answer_key(answer: StoredFeedback) -> str:
    label = answer.rationale.get("label")
    return f"{answer.value}.{label}" if answer.kind == "adoption" and label else answer.value


def _prefer_buttons(content: CardContent, value: str) -> list[ButtonElement]:
    chosen = _chosen(content, "preference")
    return [
        _button(label, f"{actions.PREFER}.{key}", value, key in chosen)
        for key, label in PREFER_LABELS.items()
        if key in ("tie", "both_bad") or any(d.label == key for d in content.drafts)
    ]


def _adopt_buttons(content: CardContent, value: str) -> list[ButtonElement]:
    chosen = _chosen(content, "adoption")
    labels = {d.label for d in content.drafts}
    return [
        _button(label, f"{actions.ADOPT}.{key}", value, key in chosen)
        for key, label in ADOPT_LABELS.items()
        if key == "not_used" or key[-1] in labels
    ]


def _button(text: str, action_id: str, value: str, chosen: bool) -> ButtonElement:
    return ButtonElement(
        text=f"✓ {text}" if chosen else text,
        action_id=action_id,
        value=value,
        style="primary" if chosen else None,
    )


def _source_blocks(content: CardContent) -> list[Block]:
    if not content.sources:
        return [SectionBlock(text=MarkdownTextObject(text="*Sources:* none were cited."))]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text="*Sources:* were they relevant to this ticket?"))
    ]
    for number, ref in enumerate(content.sources[:MAX_SOURCES], start=1):
        subject = f"chunk:{ref.chunk_id}"
        snippet, _ = fold_mrkdwn(" ".join(ref.text.split()), SNIPPET_CHARS, SNIPPET_MAX)
        who = ", ".join(
            f"<@{a.agent_id}>: {_word(a)}" for a in _answers(content, "relevance", subject)
        )
        moved = _memory_note(content.memory.get(ref.chunk_id))
        line = f"[{number}] {_internal_mark(ref)}{link(ref.url, ref.title)}{moved}\n_{snippet}_"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"{line}\n{who}" if who else line)))
        value = ButtonValue(content.draft_set_id, str(ref.chunk_id)).encode()
        chosen = _chosen(content, "relevance", subject)
        blocks.append(
            _buttons(
                f"aitl.rel.{ref.chunk_id}",
                [
                    _button("Relevant", actions.RELEVANT, value, "relevant" in chosen),
                    _button("Not relevant", actions.NOT_RELEVANT, value, "not_relevant" in chosen),
                ],
            )
        )
    return blocks


INTERNAL_MARK = ":lock: *Internal (agents only)* — not quoted in the drafts · "


def _internal_mark(ref: ChunkRef) -> str:
    """An agent-only article is shown for the agent's eyes, plainly marked as such."""
    return INTERNAL_MARK if ref.audience == "internal" else ""


MEMORY_WORDS = {"up": "ranked up", "down": "ranked down", "joined": "suggested"}


def _memory_note(move: Mapping[str, Any] | None) -> str:
    """A source's " · ranked up by 3 similar tickets": the agent sees that earlier clicks on
    tickets like this one moved it (rag.memory.fuse), so a click visibly counts."""
    if not move or move.get("moved") not in MEMORY_WORDS:
        return ""
    tickets = int(move.get("tickets") or 0)
    plural = "s" if tickets != 1 else ""
    return f" · _{MEMORY_WORDS[move['moved']]} by {tickets} similar ticket{plural}_"


def _missing_button(content: CardContent, value: str) -> ButtonElement:
    count = len(_answers_of_kind(content.answers, "missing_knowledge"))
    text = "Add missing knowledge" + (f" ({count} noted)" if count else "")
    return ButtonElement(text=text, action_id=actions.MISSING, value=value)


def _answers_of_kind(answers: Iterable[StoredFeedback], kind: str) -> list[StoredFeedback]:
    return [a for a in answers if a.kind == kind]


def _footer(content: CardContent) -> ContextBlock:
    """Which model wrote which draft stays hidden: the preference is a blind A/B test."""
    shown = sum(ref.audience != "internal" for ref in content.sources)
    internal = len(content.sources) - shown
    cited = f"{shown} source{'s' if shown != 1 else ''} cited"
    if internal:
        cited += f", {internal} internal (agents only) not quoted"
    # once clicks on similar tickets moved a source, the agent's own clicks visibly count now
    soon = "count on the next similar ticket and " if content.memory else ""
    text = f"{cited}. Your clicks {soon}train next week's drafts."
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def as_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    """Blocks as Slack receives them; raises SlackObjectFormationError past Slack's limits."""
    return [b.to_dict() for b in blocks]
