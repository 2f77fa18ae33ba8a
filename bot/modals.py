"""Listeners for adoption and missing knowledge: the buttons that open the modals, their
submissions (validated in the ack), and the knowledge-base search behind the select."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App

from aitl.core.exceptions import AitlError
from aitl.core.pii import redact
from bot import actions, payloads, slack_api
from bot.actions import ButtonValue
from bot.exceptions import MalformedPayload, UnknownCard
from bot.guards import agents_only
from bot.modals_views import (
    NOTE_CHARS,
    REASONS,
    ModalContext,
    adoption_modal,
    kb_option,
    missing_modal,
)
from bot.services import BotServices
from bot.threads import GONE, record, tell, ticket_label
from flywheel import events
from flywheel.events import Dismissal, Feedback

log = logging.getLogger(__name__)
SUGGESTIONS = 10
SEARCH_WAIT_S = 2.0  # Slack drops an options answer after 3 s: empty beats never
URL_PATTERN = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def register(app: App, services: BotServices) -> None:
    guard = [agents_only(services)]
    app.action(actions.ADOPT_PATTERN, middleware=guard)(on_adopt_click(services))
    app.action(actions.MISSING, middleware=guard)(on_missing_click(services))
    app.view(actions.ADOPTION_VIEW, middleware=guard)(on_adoption_submit(services))
    app.view(actions.MISSING_VIEW, middleware=guard)(on_missing_submit(services))
    app.view_closed(actions.ADOPTION_VIEW, middleware=guard)(on_closed(services, "adoption"))
    closed_missing = on_closed(services, "missing_knowledge")
    app.view_closed(actions.MISSING_VIEW, middleware=guard)(closed_missing)
    app.options(actions.KB_SEARCH)(on_kb_search(services))


def _context(services: BotServices, body: dict, button: ButtonValue, **extra: Any) -> ModalContext:
    card = services.cards.card_of_set(button.draft_set_id)
    action = payloads.first_action(body)
    return ModalContext(
        draft_set_id=button.draft_set_id,
        clicked_at=payloads.clicked_at(action).isoformat(),
        response_url=payloads.response_url(body),
        ticket=ticket_label(card),
        post_allowed=card.zendesk_ticket_id is not None and services.writer is not None,
        public_allowed=services.settings.zendesk_public_writeback,
        **extra,
    )


def on_adopt_click(services: BotServices):
    """The adoption is recorded on the click, like every other button: the modal that opens
    asks for its reasons, and an agent who closes it keeps the adoption without them."""

    def listener(ack, body: dict, respond) -> None:
        action = payloads.first_action(body)
        match = actions.ADOPT_PATTERN.match(action["action_id"])
        value, label = (match.group(1), match.group(2)) if match.group(1) else ("not_used", None)
        button = ButtonValue.decode(action.get("value"))
        feedback = Feedback(
            kind="adoption",
            value=value,
            draft_set_id=button.draft_set_id,
            agent_id=payloads.user_id(body),
            clicked_at=payloads.clicked_at(action),
            rationale={"label": label} if label else {},
            source_ref=payloads.source_ref(body, action),
        )
        if not record(services, ack, respond, body, feedback, label=label):
            return
        try:
            context = _context(services, body, button, value=value, label=label)
            draft = _draft_text(services, button.draft_set_id, label) if label else None
        except UnknownCard:
            tell(respond, GONE)
            return
        slack_api.open_modal(services.client, body, adoption_modal(context, draft))

    return listener


def on_closed(services: BotServices, modal: str):
    """A modal closed unsent (Slack's view_closed, which it sends because we ask): what was
    clicked stands without its reasons, and the close is counted for the digest's fatigue
    figures. The follow-up "Anything we missed?" closed with "Nothing missing" is an answer,
    not a close."""

    def listener(ack, body: dict, view: dict) -> None:
        try:
            context = ModalContext.decode(view.get("private_metadata"))
            view_id = view.get("id")
            if not isinstance(view_id, str) or not view_id:
                raise MalformedPayload("view_closed names no view")
        except MalformedPayload as exc:
            log.info("a closed modal that is not ours: %s", exc)
            ack()
            return
        if not context.after_adoption:
            _record_close(services, modal, context, payloads.user_id(body), view_id)
        ack()

    return listener


def _record_close(
    services: BotServices, modal: str, context: ModalContext, user: str, view_id: str
) -> None:
    try:
        services.cards.card_of_set(context.draft_set_id)  # one of our cards
    except UnknownCard:
        log.info("closed modal %s names no card of ours", view_id)
        return
    closed = Dismissal(modal, context.draft_set_id, user, view_id, payloads.clicked_at(None))
    with services.db.connection() as conn:
        events.record_dismissal(conn, closed)


def _draft_text(services: BotServices, draft_set_id: int, label: str) -> str | None:
    drafts = services.cards.drafts(draft_set_id)
    return next((d.text for d in drafts if d.label == label), None)


def on_adoption_submit(services: BotServices):
    def listener(ack, body: dict, view: dict) -> None:
        context = ModalContext.decode(view.get("private_metadata"))
        values = payloads.state_values(body)
        reason = payloads.input_value(values, actions.REASON)
        if not isinstance(reason, str) or reason not in REASONS.get(context.value, {}):
            ack(response_action="errors", errors={actions.REASON: "Pick the main reason."})
            return
        details = _typed(values, actions.DETAILS)
        edited = _typed(values, actions.EDITED)
        post = payloads.input_value(values, actions.POST)
        post = post if isinstance(post, list) else []
        rationale: dict[str, Any] = {"reason": reason, "label": context.label}
        if details:
            rationale["details"] = redact(details)
        if edited:
            rationale["edited_reply"] = redact(edited)
        rationale["post_to_ticket"] = "post" in post
        feedback = Feedback(
            kind="adoption",
            value=context.value,
            draft_set_id=context.draft_set_id,
            agent_id=payloads.user_id(body),
            clicked_at=_when(context.clicked_at),
            rationale={k: v for k, v in rationale.items() if v is not None},
            source_ref=payloads.source_ref(body),
        )
        try:
            recorded = services.recorder.record(
                feedback, label=context.label, response_url=context.response_url
            )
        except UnknownCard:
            ack(response_action="errors", errors={actions.REASON: GONE[:150]})
            return
        note = None
        if "post" in post and context.post_allowed:
            note = _write_back(services, recorded, edited, public="public" in post)
        follow_up = ModalContext(**{**context.__dict__, "after_adoption": True})
        ack(response_action="update", view=missing_modal(follow_up, note).to_dict())

    return listener


def _when(iso: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return payloads.clicked_at(None)


def _write_back(services: BotServices, recorded, edited: str, *, public: bool) -> str:
    """Queue the Zendesk write-back; the note tells the agent what happened."""
    card = recorded.card
    ticket_id = card.zendesk_ticket_id
    draft_id = recorded.event.draft_id
    if ticket_id is None or services.writer is None:
        return "This card has no Zendesk ticket to post to."
    body = edited or _draft_by_id(services, card, draft_id)
    try:
        services.writer().request(
            key=recorded.event.idempotency_key,
            ticket_id=ticket_id,
            body=body,
            draft_id=draft_id,
            public=public,
        )
    except AitlError as exc:
        log.warning("write-back for %s was not queued: %s", card.ticket_ref, exc)
        return f"Could not post to Zendesk: {exc}"
    return f"Posting it to ticket #{ticket_id}."


def _draft_by_id(services: BotServices, card, draft_id: int | None) -> str:
    drafts = services.cards.drafts(card.draft_set_id)
    return next((d.text for d in drafts if d.id == draft_id), "")


def on_missing_click(services: BotServices):
    def listener(ack, body: dict, respond) -> None:
        action = payloads.first_action(body)
        ack()
        try:
            context = _context(services, body, ButtonValue.decode(action.get("value")))
        except UnknownCard:
            tell(respond, GONE)
            return
        slack_api.open_modal(services.client, body, missing_modal(context))

    return listener


def on_missing_submit(services: BotServices):
    def listener(ack, body: dict, view: dict) -> None:
        context = ModalContext.decode(view.get("private_metadata"))
        values = payloads.state_values(body)
        picked = payloads.input_value(values, actions.ARTICLE)
        picked = picked if isinstance(picked, str) else None
        url = _typed(values, actions.URL)
        note = _typed(values, actions.NOTE)
        errors = _missing_errors(picked, url, note)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        chunk = int(picked.removeprefix("chunk:")) if picked else None
        value = "article" if chunk else ("url" if url else "note")
        rationale = {"url": url or None, "note": redact(note) if note else None}
        feedback = Feedback(
            kind="missing_knowledge",
            value=value,
            draft_set_id=context.draft_set_id,
            agent_id=payloads.user_id(body),
            clicked_at=payloads.clicked_at(None),
            subject=f"view:{view.get('id') or context.clicked_at}",
            chunk_ids=(chunk,) if chunk else (),
            rationale={k: v for k, v in rationale.items() if v},
            source_ref={**payloads.source_ref(body), "after_adoption": context.after_adoption},
        )
        try:
            services.recorder.record(feedback, response_url=context.response_url)
        except UnknownCard:
            ack(response_action="errors", errors={actions.NOTE: GONE[:150]})
            return
        ack()

    return listener


def _typed(values: dict, block_id: str) -> str:
    """What the agent typed, fit for Postgres text: no NUL bytes, no lone surrogates."""
    value = payloads.input_value(values, block_id)
    if not isinstance(value, str):
        return ""
    value = value.replace("\x00", "").strip()
    return value.encode("utf-8", "replace").decode("utf-8")


def _missing_errors(picked: str | None, url: str, note: str) -> dict[str, str]:
    if picked and not re.fullmatch(r"chunk:[0-9]{1,18}", picked):
        return {actions.ARTICLE: "Pick an article from the list."}
    if url and not URL_PATTERN.match(url):
        return {actions.URL: "Give a web address starting with http:// or https://"}
    if len(note) > NOTE_CHARS:
        return {actions.NOTE: f"Keep it under {NOTE_CHARS} characters."}
    if not (picked or url or note):
        return {actions.NOTE: "Name an article, give a link or say what was missing."}
    return {}


def on_kb_search(services: BotServices):
    def listener(ack, body: dict) -> None:
        raw = body.get("value")
        query = raw.replace("\x00", "").strip()[:500] if isinstance(raw, str) else ""
        if len(query) < 2:
            ack(options=[])
            return
        if not services.ready.wait(SEARCH_WAIT_S):  # the process is still loading its models
            log.info("knowledge-base search before the models were loaded: no options yet")
            ack(options=[])
            return
        options, seen = [], set()
        for hit in services.search_kb(query, k=SUGGESTIONS * 3):
            if hit.document_id in seen:
                continue
            seen.add(hit.document_id)
            options.append(kb_option(hit.chunk_id, hit.title, hit.text).to_dict())
            if len(options) == SUGGESTIONS:
                break
        ack(options=options)

    return listener
