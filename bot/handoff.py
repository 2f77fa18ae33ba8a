"""The Slack side of the Zendesk hand-off: a ready draft set becomes a card in the ticket's
thread. It satisfies ``connectors.handoff.DraftHandoff`` by shape; the bot does not import
the connector, and the value handed over (``rag.models.ReadyDrafts``) lives where both may."""

from __future__ import annotations

import logging
from typing import Any

from bot import store as bot_store
from bot.exceptions import SlackAppInactive
from bot.services import BotServices
from rag.models import ReadyDrafts

log = logging.getLogger(__name__)


class SlackHandoff:
    def __init__(self, services: BotServices) -> None:
        self.services = services

    def deliver(self, ready: ReadyDrafts) -> bool:
        """Post the ticket's card; idempotent per draft request. False: not shown in Slack."""
        if not self.services.settings.slack_configured or not ready.channel:
            return False
        ticket_ref = str(ready.ticket.ref)
        with self.services.db.connection() as conn:
            card = bot_store.ensure_card(
                conn,
                handoff_key=f"zendesk-request:{ready.request_id}",
                kind="ticket",
                draft_set_id=ready.draft_set_id,
                ticket_ref=ticket_ref,
                drafts={d.label: d.id for d in ready.drafts},
                header=ticket_header(ready),
                channel=ready.channel,
            )
            if card.parent_ts is None:
                # a ticket keeps one thread: a later revision's card joins the first one's
                parent = bot_store.thread_of_ticket(conn, ticket_ref, ready.channel)
                if parent is not None:
                    bot_store.mark_parent_posted(conn, card.id, ready.channel, parent)
                    card = bot_store.card(conn, card.id) or card
        try:
            return self.services.cards.post_ticket(card)
        except SlackAppInactive as exc:  # the drafts stay recorded; retrying cannot post them
            log.warning("ticket %s not posted to Slack: %s", ticket_ref, exc)
            return False


def ticket_header(ready: ReadyDrafts) -> dict[str, Any]:
    t = ready.ticket
    return {
        "number": t.ref.zendesk_id,
        "subject": t.subject,
        "requester": t.requester,
        "priority": t.priority,
        "status": t.status,
        "url": t.url,
        "assignee": t.assignee_email,
        "assignee_email": t.assignee_email,
        "channel": t.channel,
        "form_id": t.form_id,
        "ticket_type": t.ticket_type,
        "locale": t.locale,
        "brand": t.brand,
        # plain JSON: the card's header is stored with it
        "attachments": [
            {
                "file_name": a.file_name,
                "content_type": a.content_type,
                "size_bytes": a.size_bytes,
                "url": a.url,
                "inline": a.inline,
            }
            for a in t.attachments
        ],
    }
