"""Listeners for the card in a ticket thread: preference, relevance, a draft in full."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot import actions, payloads, slack_api
from bot.actions import ButtonValue
from bot.exceptions import RequestRejected, UnknownCard
from bot.guards import agents_only
from bot.modals_views import full_draft_modal
from bot.services import BotServices
from flywheel.events import Feedback

log = logging.getLogger(__name__)
GONE = "This card is no longer known to AITL (it may come from another installation)."


def register(app: App, services: BotServices) -> None:
    guard = [agents_only(services)]
    app.action(actions.PREFER_PATTERN, middleware=guard)(on_prefer(services))
    app.action(actions.RELEVANCE_PATTERN, middleware=guard)(on_relevance(services))
    app.action(actions.SHOW_PATTERN)(on_show_full(services))


def on_prefer(services: BotServices):
    def listener(ack, body: dict, respond) -> None:
        action = payloads.first_action(body)
        value = actions.PREFER_PATTERN.match(action["action_id"]).group(1)
        button = ButtonValue.decode(action.get("value"))
        feedback = Feedback(
            kind="preference",
            value=value,
            draft_set_id=button.draft_set_id,
            agent_id=payloads.user_id(body),
            clicked_at=payloads.clicked_at(action),
            source_ref=payloads.source_ref(body, action),
        )
        record(services, ack, respond, body, feedback, label=value if value in "AB" else None)

    return listener


def on_relevance(services: BotServices):
    def listener(ack, body: dict, respond) -> None:
        action = payloads.first_action(body)
        value = actions.RELEVANCE_PATTERN.match(action["action_id"]).group(1)
        button = ButtonValue.decode(action.get("value"))
        feedback = Feedback(
            kind="relevance",
            value=value,
            draft_set_id=button.draft_set_id,
            agent_id=payloads.user_id(body),
            clicked_at=payloads.clicked_at(action),
            subject=f"chunk:{button.chunk_id}",
            chunk_ids=(button.chunk_id,),
            source_ref=payloads.source_ref(body, action),
        )
        record(services, ack, respond, body, feedback)

    return listener


def record(
    services: BotServices,
    ack,
    respond,
    body: dict[str, Any],
    feedback: Feedback,
    label: str | None = None,
) -> bool:
    """Store, then ack: a click that could not be stored is not acknowledged. False when the
    click was refused (the agent is told why)."""
    try:
        services.recorder.record(feedback, label=label, response_url=payloads.response_url(body))
    except (UnknownCard, RequestRejected) as exc:
        ack()
        tell(respond, GONE if isinstance(exc, UnknownCard) else str(exc))
        return False
    ack()
    return True


def tell(respond, text: str) -> None:
    """A private note to the user who clicked; best effort."""
    try:
        respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:
        log.warning("could not send a note to the user: %s", exc)


def on_show_full(services: BotServices):
    def listener(ack, body: dict, respond) -> None:
        action = payloads.first_action(body)
        button = ButtonValue.decode(action.get("value"))
        ack()
        try:
            card = services.cards.card_of_set(button.draft_set_id)
            draft = next(
                d for d in services.cards.drafts(card.draft_set_id) if d.label == button.extra
            )
        except (UnknownCard, StopIteration):
            tell(respond, GONE)
            return
        view = full_draft_modal(draft.label, draft.text, ticket_label(card))
        slack_api.open_modal(services.client, body, view)

    return listener


def ticket_label(card) -> str:
    number = card.zendesk_ticket_id
    return f"ticket #{number}" if number is not None else "your question"
