"""Turn a draft request into two drafts through the rag pipeline, record them, hand them off."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aitl.core.db import Database
from aitl.core.pii import redact
from connectors import store
from connectors.attachments import customer_attachments
from connectors.handoff import DraftHandoff
from connectors.placeholder_values import ticket_values
from rag import store as rag_store
from rag.models import Message, ReadyDrafts, Ticket, TicketHeader, TicketRef
from rag.pipeline import DraftPipeline

log = logging.getLogger(__name__)


def pipeline_ticket(
    ticket: store.StoredTicket,
    comments: list[store.StoredComment],
    *,
    attachments: Sequence[store.StoredAttachment] = (),
) -> Ticket:
    """The customer-facing conversation only: internal notes never reach a draft. With it the
    ticket's brand, the requester's locale, and what the customer attached."""
    public = [c for c in comments if c.public]
    latest = next((c for c in reversed(public) if c.author_role == "customer"), None)
    earlier = [c for c in public if latest is None or c.comment_id != latest.comment_id]
    thread = tuple(Message(c.author_role, c.body) for c in earlier)
    body = latest.body if latest else ticket.description
    return Ticket(
        ticket.subject,
        body,
        thread,
        external_id=str(TicketRef.zendesk(ticket.ticket_id)),
        brand=str(ticket.brand_id) if ticket.brand_id is not None else None,
        locale=ticket.requester_locale,
        attachments=customer_attachments(comments, attachments),
        placeholders=ticket_values(ticket),  # what a macro's {{…}} renders to in its drafts
    )


class Drafter:
    def __init__(
        self, db: Database, pipeline: Callable[[], DraftPipeline], handoff: DraftHandoff, ticket_url
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.handoff = handoff
        self.ticket_url = ticket_url

    def run(self, request_id: int) -> None:
        with self.db.connection() as conn:
            request = store.draft_request(conn, request_id)
            if request is None or request.status == "delivered":
                return
            ticket = store.ticket(conn, request.ticket_id)
            comments = store.comments(conn, request.ticket_id)
            attachments = store.attachments(conn, request.ticket_id)
        drafted = pipeline_ticket(ticket, comments, attachments=attachments)
        set_id = request.draft_set_id
        if set_id is None:  # drafted once only, even when delivery is retried
            result = self.pipeline().draft(drafted)
            with self.db.connection() as conn:
                set_id = rag_store.save_draft_set(
                    conn,
                    str(TicketRef.zendesk(ticket.ticket_id)),
                    redact(result.ticket.query_text()),
                    result,
                )
                store.mark_drafted(conn, request_id, set_id)
        if self.handoff.deliver(self._ready(request, ticket, drafted, set_id)):
            with self.db.connection() as conn:
                store.mark_delivered(conn, request_id)

    def _ready(self, request, ticket, drafted: Ticket, set_id: int) -> ReadyDrafts:
        with self.db.connection() as conn:
            drafts = rag_store.drafts_of_set(conn, set_id)
        header = TicketHeader(
            ref=TicketRef.zendesk(ticket.ticket_id),
            subject=ticket.subject,
            requester=ticket.requester_name or ticket.requester_email,
            priority=ticket.priority,
            status=ticket.status,
            url=self.ticket_url(ticket.ticket_id),
            assignee_email=ticket.assignee_email,
            channel=ticket.via_channel,
            form_id=ticket.ticket_form_id,
            ticket_type=ticket.ticket_type,
            locale=drafted.locale,
            brand=drafted.brand,
            attachments=drafted.attachments,
        )
        return ReadyDrafts(request.id, header, set_id, drafts, request.channel)
