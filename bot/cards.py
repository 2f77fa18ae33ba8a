"""Cards in Slack: post a ticket's thread, answer ``/aitl ask``, re-render after clicks.

Posting is idempotent per hand-off: each message's ts is stored as soon as Slack returns
it, so a retried job skips what is already there. A worker can still die between Slack
taking a message and the ts being stored; every post carries a key of its card, and a
posting that started before is looked for in Slack before anything is posted again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from aitl.core.db import Database
from aitl.core.pii import redact
from bot import card_views as card_blocks
from bot import slack_api
from bot import store as bot_store
from bot.card_views import CardContent
from bot.directory import Directory
from bot.exceptions import SlackRefused, SlackUnavailable, UnknownCard
from flywheel import events
from rag import store as rag_store
from rag.models import Ticket
from rag.pipeline import DraftPipeline
from rag.store import StoredDraft

log = logging.getLogger(__name__)


class CardService:
    def __init__(
        self,
        db: Database,
        client: WebClient,
        directory: Directory,
        pipeline: Callable[[], DraftPipeline],
    ) -> None:
        self.db = db
        self.client = client
        self.directory = directory
        self.pipeline = pipeline

    # --- reading ---------------------------------------------------------------------------

    def content(self, card: bot_store.Card) -> CardContent:
        with self.db.connection() as conn:
            drafts = rag_store.drafts_of_set(conn, card.draft_set_id)
            cited = [cid for d in drafts for cid in d.citations]
            refs = rag_store.chunk_refs(conn, cited)
            context = rag_store.context_refs(conn, card.draft_set_id)
            answers = events.current(conn, card.draft_set_id)
        order = list(dict.fromkeys(cited))
        sources = [refs[cid] for cid in order if cid in refs]
        # agent-only articles are never quoted, so never cited: the card lists them anyway
        sources += [r for r in context if r.audience == "internal" and r.chunk_id not in refs]
        return CardContent(
            card.draft_set_id, card.kind, card.header, drafts, sources, answers, _moved(drafts)
        )

    def drafts(self, draft_set_id: int) -> list[StoredDraft]:
        with self.db.connection() as conn:
            return rag_store.drafts_of_set(conn, draft_set_id)

    def card_of_set(self, draft_set_id: int) -> bot_store.Card:
        with self.db.connection() as conn:
            found = bot_store.card_of_set(conn, draft_set_id)
        if found is None:
            raise UnknownCard(f"no card shows draft set {draft_set_id}")
        return found

    # --- ticket threads --------------------------------------------------------------------

    def post_ticket(self, card: bot_store.Card) -> bool:
        """Parent message, then the card in its thread; False when Slack refuses for good."""
        channel = card.channel
        if channel is None:
            return False
        try:
            if card.parent_ts is not None and card.card_ts is not None:
                return True
            with self.db.connection() as conn:
                retried = bot_store.count_post_attempt(conn, card.id) > 0
            if card.parent_ts is None:
                card = self._post_parent(card, channel, retried)
            if card.card_ts is None:
                blocks, text = card_blocks.card_blocks(self.content(card))
                response = slack_api.post_once(
                    self.client,
                    f"aitl-card:{card.id}:card",
                    check_first=retried,
                    channel=card.channel or channel,
                    thread_ts=card.parent_ts,
                    text=text,
                    blocks=card_blocks.as_dicts(blocks),
                    unfurl_links=False,
                )
                with self.db.connection() as conn:
                    bot_store.mark_shown(conn, card.id, response["channel"], response["ts"])
        except SlackRefused as exc:
            log.warning("Slack refused the thread of %s: %s", card.ticket_ref, exc)
            with self.db.connection() as conn:
                bot_store.note_error(conn, card.id, _explain(exc, channel))
            return False
        return True

    def _post_parent(self, card: bot_store.Card, channel: str, retried: bool) -> bot_store.Card:
        header = dict(card.header)
        if header.get("assignee_email") and not header.get("assignee_slack"):
            header["assignee_slack"] = self.directory.user_by_email(header["assignee_email"])
        blocks, text = card_blocks.ticket_parent(header)
        response = slack_api.post_once(
            self.client,
            f"aitl-card:{card.id}:parent",
            check_first=retried,
            channel=channel,
            text=text,
            blocks=card_blocks.as_dicts(blocks),
            unfurl_links=False,
        )
        with self.db.connection() as conn:
            bot_store.set_header(conn, card.id, header)
            bot_store.mark_parent_posted(conn, card.id, response["channel"], response["ts"])
            posted = bot_store.card(conn, card.id)
        assert posted is not None
        return posted

    # --- after a click ---------------------------------------------------------------------

    def refresh(self, card_id: int, response_url: str | None = None) -> None:
        """Re-render a card with the answers recorded so far."""
        with self.db.connection() as conn:
            card = bot_store.card(conn, card_id)
        if card is None:
            raise UnknownCard(f"no card {card_id}")
        blocks, text = card_blocks.card_blocks(self.content(card))
        payload = card_blocks.as_dicts(blocks)
        if card.kind == "ask" or card.card_ts is None:
            if response_url:
                self._respond(response_url, text, payload, replace=True)
            return
        slack_api.call(
            self.client.chat_update,
            channel=card.channel,
            ts=card.card_ts,
            text=text,
            blocks=payload,
        )

    # --- /aitl ask -------------------------------------------------------------------------

    def answer_question(
        self, *, user_id: str, channel_id: str, question: str, response_url: str, ask_id: str
    ) -> None:
        """Draft for an ad-hoc question and show the card to the asker only."""
        key = f"ask:{ask_id}"
        with self.db.connection() as conn:
            existing = bot_store.card_by_key(conn, key)
        card = existing or self._draft_question(user_id, channel_id, question, key)
        if card.shown_at is not None:
            return
        blocks, text = card_blocks.card_blocks(self.content(card))
        self._respond(response_url, text, card_blocks.as_dicts(blocks), replace=False)
        with self.db.connection() as conn:
            bot_store.mark_shown(conn, card.id, channel_id, None)

    def _draft_question(
        self, user_id: str, channel_id: str, question: str, key: str
    ) -> bot_store.Card:
        ticket = Ticket(subject="", body=question, external_id=key)
        result = self.pipeline().draft(ticket)
        with self.db.connection() as conn:
            set_id = rag_store.save_draft_set(conn, key, redact(question), result)
            drafts = {d.label: d.id for d in rag_store.drafts_of_set(conn, set_id)}
            return bot_store.ensure_card(
                conn,
                handoff_key=key,
                kind="ask",
                draft_set_id=set_id,
                ticket_ref=key,
                drafts=drafts,
                header={"question": question[:2000]},
                channel=channel_id,
                requested_by=user_id,
            )

    def _respond(self, url: str, text: str, blocks: list[dict[str, Any]], replace: bool) -> None:
        try:
            response = WebhookClient(url, timeout=10).send(
                text=text,
                blocks=blocks,
                response_type="ephemeral",
                replace_original=replace,
            )
        except OSError as exc:
            raise SlackUnavailable(f"Slack response_url: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise SlackUnavailable(f"Slack response_url answered {response.status_code}")
        if response.status_code >= 400:
            raise SlackRefused("response_url", f"{response.status_code} {response.body}")


def _moved(drafts: list[StoredDraft]) -> dict[int, dict[str, Any]]:
    """Chunk id → how the feedback memory moved it, as the drafts' producer recorded it
    (rag.memory.Fusion.moves; both drafts of a set share one retrieval)."""
    moved: dict[int, dict[str, Any]] = {}
    for draft in drafts:
        for chunk_id, move in (draft.producer.get("memory") or {}).items():
            if isinstance(move, dict):
                moved.setdefault(int(chunk_id), move)
    return moved


def new_ask_id() -> str:
    return uuid.uuid4().hex


def _explain(exc: SlackRefused, channel: str) -> str:
    hints = {
        "not_in_channel": f"invite the AITL bot to <#{channel}>",
        "channel_not_found": f"channel {channel} does not exist or is private",
        "is_archived": f"<#{channel}> is archived",
    }
    hint = hints.get(exc.error)
    return f"{exc.error}: {hint}" if hint else exc.error
