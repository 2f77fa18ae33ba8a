"""Block Kit for the modals: the adoption rationale, missing knowledge, a draft in full.

What a modal needs to know about the click that opened it travels in ``private_metadata``
(limited by Slack to 3,000 characters), so a submission can be recorded without a lookup.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from slack_sdk.models.blocks import (
    CheckboxesElement,
    ContextBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UrlInputElement,
)
from slack_sdk.models.views import View

from bot import actions
from bot.card_views import SECTION_CHARS, escape, fold, mrkdwn_parts
from bot.exceptions import MalformedPayload

INPUT_CHARS = 3000
DETAILS_CHARS = 1000
NOTE_CHARS = 2000
REASONS: dict[str, dict[str, str]] = {
    "as_is": {
        "accurate": "Accurate and complete",
        "saved_time": "Saved me time",
        "tone": "Right tone for the customer",
        "other": "Other",
    },
    "edited": {
        "fact": "Fixed a wrong fact",
        "missing_step": "Added a missing step",
        "tone": "Changed the tone",
        "length": "Made it shorter",
        "personal": "Personalised it",
        "outdated": "Updated outdated information",
        "other": "Other",
    },
    "not_used": {
        "wrong": "Wrong or unsafe answer",
        "missing_knowledge": "The knowledge was missing",
        "investigate": "Needed investigation first",
        "misread": "Misread the question",
        "generic": "Too generic",
        "other": "Other",
    },
}


@dataclass(frozen=True)
class ModalContext:
    """The click behind a modal."""

    draft_set_id: int
    value: str = ""
    label: str | None = None
    clicked_at: str = ""
    response_url: str | None = None
    ticket: str = ""
    post_allowed: bool = False
    public_allowed: bool = False
    after_adoption: bool = False

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, metadata: str | None) -> ModalContext:
        try:
            data = json.loads(metadata or "")
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise MalformedPayload("the modal's private_metadata is not ours") from exc


def adoption_modal(context: ModalContext, draft_text: str | None) -> View:
    """Why the agent used a draft, edited it or used neither; optionally post it to Zendesk."""
    reasons = REASONS[context.value]
    options = [Option(value=key, text=text) for key, text in reasons.items()]
    initial = options[0] if context.value == "as_is" else None
    blocks: list[Any] = [
        SectionBlock(text=MarkdownTextObject(text=_adoption_line(context))),
        InputBlock(
            block_id=actions.REASON,
            label="Main reason",
            element=StaticSelectElement(
                action_id=actions.REASON,
                placeholder="Pick one",
                options=options,
                initial_option=initial,
            ),
        ),
        InputBlock(
            block_id=actions.DETAILS,
            label="Anything to add? (optional)",
            optional=True,
            element=PlainTextInputElement(
                action_id=actions.DETAILS, multiline=True, max_length=DETAILS_CHARS
            ),
        ),
    ]
    if context.value == "edited":
        blocks.append(_edited_input(draft_text))
    if context.value in ("as_is", "edited") and context.post_allowed:
        blocks.append(_post_choice(context))
    return View(
        type="modal",
        callback_id=actions.ADOPTION_VIEW,
        title="Draft used?",
        submit="Save",
        close="Cancel",
        notify_on_close=True,
        private_metadata=context.encode(),
        blocks=blocks,
    )


def _adoption_line(context: ModalContext) -> str:
    where = f" on {escape(context.ticket)}" if context.ticket else ""
    if context.value == "as_is":
        return f"You sent *Draft {context.label}* as it was{where}."
    if context.value == "edited":
        return f"You sent an edited *Draft {context.label}*{where}."
    return f"You used neither draft{where}."


def _edited_input(draft_text: str | None) -> InputBlock:
    initial = draft_text if draft_text and len(draft_text) <= INPUT_CHARS else None
    return InputBlock(
        block_id=actions.EDITED,
        label="The reply you sent (edit the draft here)",
        optional=True,
        hint="Your edit teaches the generator what a good reply looks like.",
        element=PlainTextInputElement(
            action_id=actions.EDITED,
            multiline=True,
            max_length=INPUT_CHARS,
            initial_value=initial,
        ),
    )


def _post_choice(context: ModalContext) -> InputBlock:
    post = Option(value="post", text=f"Add it to {context.ticket} as an internal note")
    options = [post]
    if context.public_allowed:
        options.append(Option(value="public", text="…as a public reply the customer sees"))
    return InputBlock(
        block_id=actions.POST,
        label="Zendesk",
        optional=True,
        element=CheckboxesElement(action_id=actions.POST, options=options, initial_options=[post]),
    )


def missing_modal(context: ModalContext, note: str | None = None) -> View:
    """The knowledge the agent needed: a KB search, a URL, or a note, while the ticket is open."""
    title = "Anything we missed?" if context.after_adoption else "Missing knowledge"
    intro = (
        "Saved, thank you. If an article, macro or page would have helped, name it now."
        if context.after_adoption
        else "Name the article, macro or page the drafts should have used."
    )
    where = f" ({escape(context.ticket)})" if context.ticket else ""
    if note:
        intro = f"{escape(note)}\n{intro}"
    return View(
        type="modal",
        callback_id=actions.MISSING_VIEW,
        title=title,
        submit="Save",
        close="Nothing missing" if context.after_adoption else "Cancel",
        notify_on_close=True,  # a cancelled search for missing knowledge is counted
        private_metadata=context.encode(),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro + where)),
            InputBlock(
                block_id=actions.ARTICLE,
                label="Search the knowledge base",
                optional=True,
                element=ExternalDataSelectElement(
                    action_id=actions.KB_SEARCH,
                    placeholder="Type a few words",
                    min_query_length=2,
                ),
            ),
            InputBlock(
                block_id=actions.URL,
                label="Or a link",
                optional=True,
                element=UrlInputElement(action_id=actions.URL),
            ),
            InputBlock(
                block_id=actions.NOTE,
                label="What was missing?",
                optional=True,
                element=PlainTextInputElement(
                    action_id=actions.NOTE, multiline=True, max_length=NOTE_CHARS
                ),
            ),
            ContextBlock(elements=[MarkdownTextObject(text="Fill in at least one of the three.")]),
        ],
    )


def kb_option(chunk_id: int, title: str, snippet: str) -> Option:
    """An external_select option: Slack allows 75 characters of text and 75 of description."""
    text, _ = fold(title or "(untitled)", 75)
    description, _ = fold(" ".join(snippet.split()), 75)
    return Option(value=f"chunk:{chunk_id}", text=text, description=description or None)


def full_draft_modal(label: str, text: str, ticket: str) -> View:
    """A long draft in full: escaped, links as Slack links, in sections of up to 3,000
    characters."""
    blocks: list[Any] = [
        SectionBlock(text=MarkdownTextObject(text=part, verbatim=True))
        for part in mrkdwn_parts(text, SECTION_CHARS)[:90]
    ]
    if ticket:
        blocks.insert(0, ContextBlock(elements=[MarkdownTextObject(text=escape(ticket))]))
    return View(
        type="modal", callback_id=actions.FULL_DRAFT_VIEW, title=f"Draft {label}", blocks=blocks
    )
