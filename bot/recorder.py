"""Record a click: one event, and a refresh of the card queued in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace

import procrastinate

from aitl.core.db import Database
from bot import jobs
from bot import store as bot_store
from bot.exceptions import MalformedPayload, UnknownCard
from flywheel import events
from flywheel.events import Feedback, StoredFeedback


@dataclass(frozen=True)
class Recorded:
    event: StoredFeedback
    created: bool
    card: bot_store.Card


CARD_CACHE_SIZE = 10_000


class FeedbackRecorder:
    def __init__(self, db: Database, queue: procrastinate.App) -> None:
        self.db = db
        self.queue = queue
        self._cards: dict[int, bot_store.Card] = {}  # shown cards no longer change

    def record(
        self,
        feedback: Feedback,
        *,
        label: str | None = None,
        response_url: str | None = None,
        refresh: bool = True,
    ) -> Recorded:
        """Stored and committed before Slack is acknowledged; a failure here is not acked.

        ``label`` names the draft the click chose (A or B); the card knows its id. Without
        ``refresh`` no card update is queued (a card that is not in Slack).
        """
        with self.db.connection() as conn:
            card = self._card(conn, feedback.draft_set_id)
            if label is not None:
                if label not in card.drafts:
                    raise MalformedPayload(f"this card has no draft {label}")
                feedback = replace(feedback, draft_id=card.drafts[label])
            if feedback.draft_id is not None and feedback.draft_id not in card.draft_ids:
                raise MalformedPayload("the draft is not part of this card")
            shown_at = card.shown_at or card.created_at
            if feedback.clicked_at < shown_at:  # Slack's clock and ours differ a little
                feedback = replace(feedback, clicked_at=shown_at)
            event, created = events.record(
                conn,
                feedback,
                ticket_ref=card.ticket_ref,
                draft_ids=card.draft_ids,
                shown_at=shown_at,
            )
            if created and refresh:
                url = response_url if card.kind == "ask" else None
                jobs.defer_refresh(self.queue, conn, card.id, url)
        return Recorded(event, created, card)

    def _card(self, conn, draft_set_id: int) -> bot_store.Card:
        card = self._cards.get(draft_set_id)
        if card is not None:
            return card
        card = bot_store.card_of_set(conn, draft_set_id)
        if card is None:
            raise UnknownCard(f"no card shows draft set {draft_set_id}")
        if card.shown_at is not None:
            if len(self._cards) >= CARD_CACHE_SIZE:
                self._cards.clear()
            self._cards[draft_set_id] = card
        return card
