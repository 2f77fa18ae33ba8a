"""Block Kit of App Home's review queue: a sample of the judge's verdicts from the latest
cycle, each with what a reviewer needs to decide (the ticket, the agent's click, the verdict
and its reason) and **Judge is right** / **Judge is wrong**; above them, the judge's agreement
with its reviewers (Cohen's kappa). Admins and managers see it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.card_views import escape
from bot.exceptions import MalformedPayload
from flywheel.digest.report import judge_agreement_line

AGREE, DISAGREE = "aitl.judge_review.agree", "aitl.judge_review.disagree"
REVIEW_BLOCK = "aitl.judge_review"  # one actions block per verdict: .<run id>.<event id>
# "<run id>:<event id>", ASCII digits that fit Postgres' bigint
REVIEW_VALUE = re.compile(r"([0-9]{1,18}):([0-9]{1,18})")
PERIOD = "in the last 7 days"  # the span of App Home's first agreement figure
MAX_SECTION = 3000


@dataclass(frozen=True)
class ReviewValue:
    """What a review button is about: the cycle's verdict on one event."""

    run_id: int
    event_id: int

    def encode(self) -> str:
        return f"{self.run_id}:{self.event_id}"

    @classmethod
    def decode(cls, value: object) -> ReviewValue:
        found = REVIEW_VALUE.fullmatch(value) if isinstance(value, str) else None
        if found is None:
            raise MalformedPayload(f"the button names no verdict ({str(value)[:40]!r})")
        return cls(int(found.group(1)), int(found.group(2)))


@dataclass(frozen=True)
class ReviewItem:
    """One verdict as the flywheel describes it for a reviewer."""

    run_id: int
    event_id: int
    kind: str  # relevance, missing_knowledge, preference, adoption
    value: str  # the click: 'relevant', 'article', 'A', 'as_is', …
    keep: bool  # the judge's verdict
    reason: str
    agent_id: str
    clicked_at: datetime
    query: str  # the ticket, redacted
    passage: str | None = None  # the passage marked or named as missing: its title
    excerpt: str | None = None
    chosen: str | None = None  # the draft preferred or used, A or B
    drafts: dict[str, str] = field(default_factory=dict)  # label → its first lines
    note: str | None = None  # a URL or note named as missing; an adoption's reason


@dataclass(frozen=True)
class ReviewPanel:
    """The review queue of one reviewer."""

    run_id: int | None  # the cycle whose verdicts are sampled; None: none has succeeded
    items: Sequence[ReviewItem] = ()
    # the judge against reviewers, as flywheel.digest.report.judge_agreement_line reads it
    agreement: dict[str, Any] | None = None


def review_blocks(panel: ReviewPanel) -> list[Block]:
    blocks: list[Block] = [DividerBlock(), HeaderBlock(text="Review the judge")]
    head = escape(judge_agreement_line(panel.agreement, PERIOD))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=head)]))
    if panel.run_id is None:
        blocks.append(_text("No retrain has succeeded yet: its judge's verdicts will show here."))
        return blocks
    if not panel.items:
        blocks.append(
            _text(
                f"Nothing left to review from run {panel.run_id}: you have answered every"
                " verdict on a click still shown. The next cycle brings new ones."
            )
        )
        return blocks
    blocks.append(
        _text(
            f"A sample of the clicks run {panel.run_id}'s judge kept or dropped before"
            " training. Is each verdict right?"
        )
    )
    for item in panel.items:
        value = ReviewValue(item.run_id, item.event_id).encode()
        blocks.append(_text(item_text(item)))
        blocks.append(
            ActionsBlock(
                block_id=f"{REVIEW_BLOCK}.{value.replace(':', '.')}",
                elements=[
                    ButtonElement(
                        text="Judge is right", action_id=AGREE, value=value, style="primary"
                    ),
                    ButtonElement(
                        text="Judge is wrong", action_id=DISAGREE, value=value, style="danger"
                    ),
                ],
            )
        )
    return blocks


def item_text(item: ReviewItem) -> str:
    """The verdict, the ticket, the click and, for a preference or an adoption, the drafts."""
    verdict = ":white_check_mark: *Kept*" if item.keep else ":no_entry_sign: *Dropped*"
    lines = [
        f"{verdict}: {escape(item.reason)}",
        f"*Ticket:* {escape(item.query) or '_(no text)_'}",
        f"<@{escape(item.agent_id)}> {mark(item)} ({item.clicked_at:%b %d %H:%M} UTC)",
    ]
    lines += [f"• *{escape(label)}:* {escape(text)}" for label, text in item.drafts.items()]
    return _cut("\n".join(lines), MAX_SECTION)


def mark(item: ReviewItem) -> str:
    """'marked *relevant*: Title — excerpt', 'preferred *draft A*', 'used *draft B as is*' …"""
    passage = f"*{escape(item.passage or 'a passage')}*"
    if item.excerpt:
        passage += f" — {escape(item.excerpt)}"
    draft = f"draft {escape(item.chosen)}" if item.chosen else "a draft"
    note = escape(item.note or "")
    if item.kind == "relevance":
        return f"marked *{escape(item.value.replace('_', ' '))}*: {passage}"
    if item.kind == "missing_knowledge":
        if item.value == "article":
            return f"named as *missing*: {passage}"
        return f"named as *missing*: “{note}”"
    if item.kind == "preference":
        if item.value in ("A", "B"):
            return f"preferred *draft {escape(item.value)}*"
        return f"said *{escape(item.value.replace('_', ' '))}*"
    said = {
        "as_is": f"used *{draft} as is*",
        "edited": f"*edited {draft}*",
        "not_used": "used *neither draft*",
    }.get(item.value, f"answered *{escape(item.value)}*")
    return said + (f" (why: {note})" if note else "")


def _text(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_cut(text, MAX_SECTION)))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
