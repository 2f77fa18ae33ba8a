"""The connector's parts, built once per process from Settings (worker, web, CLI)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import cached_property

import procrastinate

from aitl.core.db import Database
from aitl.core.secrets import SecretStore, secret_store
from aitl.core.settings import Settings
from connectors import exceptions, helpcenter, store
from connectors.attachments import AttachmentFiles
from connectors.client import ZendeskClient, ZendeskConfig
from connectors.drafting import Drafter
from connectors.handoff import DraftHandoff, RecordOnly
from connectors.poller import TicketPoller
from connectors.tickets import SentReplies, SyncPolicy, TicketSync
from connectors.writeback import WriteBack
from rag import factory
from rag.pipeline import DraftPipeline

API_TOKEN, WEBHOOK_SECRET, EMAIL = "zendesk.api_token", "zendesk.webhook_secret", "zendesk.email"


class ZendeskServices:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        queue: procrastinate.App,
        handoff: DraftHandoff | None = None,
        pipeline: Callable[[], DraftPipeline] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.handoff = handoff or RecordOnly()
        # where each compared agent reply goes as feedback; wired by the composition root
        self.sent_replies: SentReplies | None = None
        # without the model registry: build the pipeline on first use and keep it
        self.pipeline = pipeline or functools.cache(lambda: factory.pipeline(settings, db))

    @cached_property
    def secrets(self) -> SecretStore:
        return secret_store(self.db, _secret(self.settings.secrets_key), self.settings.data_dir)

    def credentials(self) -> tuple[str, str]:
        s = self.settings
        email = s.zendesk_email or self.secrets.get(EMAIL)
        token = _secret(s.zendesk_api_token) or self.secrets.get(API_TOKEN)
        if not (s.zendesk_subdomain or s.zendesk_base_url) or not email or not token:
            raise exceptions.NotConnected()
        return email, token

    def webhook_secrets(self) -> list[str]:
        configured = _secret(self.settings.zendesk_webhook_secret)
        stored = self.secrets.get(WEBHOOK_SECRET)
        return [s for s in (configured, stored) if s]

    @cached_property
    def client(self) -> ZendeskClient:
        return self.client_for(*self.credentials())

    def client_for(self, email: str, token: str) -> ZendeskClient:
        s = self.settings
        if not (s.zendesk_subdomain or s.zendesk_base_url):
            raise exceptions.NotConnected()
        config = ZendeskConfig(
            subdomain=s.zendesk_subdomain,
            base_url=s.zendesk_base_url,
            email=email,
            api_token=token,
            timeout_s=s.zendesk_timeout_s,
            retries=s.zendesk_retries,
            retry_after_max_s=s.zendesk_retry_after_max_s,
            retry_backoff_s=s.zendesk_retry_backoff_s,
            page_size=s.zendesk_page_size,
        )
        return ZendeskClient(config)

    @cached_property
    def ticket_sync(self) -> TicketSync:
        s = self.settings
        policy = SyncPolicy(
            s.slack_routes,
            s.slack_default_channel,
            s.adoption_as_is_threshold,
            s.adoption_edited_threshold,
            attachment_files=AttachmentFiles.configured(s),
        )
        return TicketSync(self.db, self.client, self.queue, policy, self.sent_replies)

    @cached_property
    def drafter(self) -> Drafter:
        return Drafter(self.db, self.pipeline, self.handoff, self.client.ticket_url)

    @cached_property
    def writeback(self) -> WriteBack:
        return WriteBack(
            self.db, self.client, self.queue, allow_public=self.settings.zendesk_public_writeback
        )

    @cached_property
    def poller(self) -> TicketPoller:
        return TicketPoller(
            self.db,
            self.client,
            self.ticket_sync,
            per_page=self.settings.zendesk_page_size,
            backfill_days=self.settings.zendesk_backfill_days,
        )

    # --- what the queued jobs run ---------------------------------------------------------

    def process_event(self, event_id: str) -> None:
        with self.db.connection() as conn:
            ticket_id = store.event_ticket(conn, event_id)
        if ticket_id is not None:
            self.ticket_sync.sync(ticket_id, via="webhook")

    def draft(self, request_id: int) -> None:
        self.drafter.run(request_id)

    def write_back(self, writeback_id: int) -> None:
        self.writeback.run(writeback_id)

    def poll(self):
        return self.poller.poll()

    def sync_kb(self) -> helpcenter.KbSyncReports:
        """Sync the knowledge base; a brand whose Help Center could not be read stays the
        help_center sync's last error (``aitl zendesk status``) until a sync reads it."""
        options = helpcenter.KbSyncOptions(
            macros=self.settings.zendesk_sync_macros,
            solved_tickets=self.settings.zendesk_sync_solved_tickets,
            customer_segments=tuple(self.settings.zendesk_customer_segments),
        )
        try:
            reports = helpcenter.sync_knowledge(
                self.db, self.client, factory.ingestor(self.settings, self.db), options
            )
        except exceptions.ConnectorError as exc:
            with self.db.connection() as conn:
                store.note_sync_error(conn, "help_center", str(exc))
            raise
        with self.db.connection() as conn:
            seen = sum(r.seen for r in reports.values())
            store.save_cursor(conn, "help_center", None, seen)
            if unreadable := reports.help_center.unreadable_brands:
                store.note_sync_error(conn, "help_center", "; ".join(unreadable))
        return reports

    def draft_article(self, title: str, body_html: str) -> tuple[int, str]:
        """A Help Center draft (never published) from a digest's knowledge gap."""
        s = self.settings
        return helpcenter.draft_article(
            self.client,
            title,
            body_html,
            s.zendesk_drafts_section_id,
            permission_group_id=s.zendesk_drafts_permission_group_id,
            user_segment_id=s.zendesk_drafts_user_segment_id,
        )


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None
