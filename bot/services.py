"""The bot's parts, built once per process (web, worker) from Settings.

The bot may import neither the Zendesk connector nor the flywheel's insides, so the wiring hands
it ports (``bot.ports``): the reply write-back, the connector's status, the model registry and
its queued changes, the digest's content and Help Center drafts.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import procrastinate
from slack_sdk import WebClient

from aitl.core import overrides
from aitl.core.crontab import next_run
from aitl.core.db import Database
from aitl.core.settings import Settings
from bot import slack_api
from bot import store as bot_store
from bot.access import Access
from bot.cards import CardService
from bot.digest import store as digest_store
from bot.digest.service import DigestService
from bot.directory import Directory
from bot.home_views import AdminPanel, DuelPanel, HomeContent, ModelEntry
from bot.installation import InstallationState
from bot.judge_review_views import ReviewPanel
from bot.ports import (
    ConnectorPanel,
    DigestContent,
    HelpCenterDrafts,
    JudgeReviews,
    ModelChanges,
    ModelControl,
    NoConnector,
    ReplyWriter,
)
from bot.recorder import FeedbackRecorder
from flywheel import events
from rag import factory
from rag.models import RetrievedChunk
from rag.pipeline import DraftPipeline

log = logging.getLogger(__name__)
CONFIG_TTL_S = 10.0


class BotServices:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        queue: procrastinate.App,
        *,
        digest_content: DigestContent,
        ready: threading.Event | None = None,
        writer: Callable[[], ReplyWriter] | None = None,
        panel: ConnectorPanel | None = None,
        registry: Callable[[], Sequence[ModelEntry]] | None = None,
        pipeline: Callable[[], DraftPipeline] | None = None,
        models: ModelControl | None = None,
        help_center: HelpCenterDrafts | None = None,
        model_changes: Callable[[], ModelChanges] | None = None,
        duel: Callable[[], DuelPanel | None] | None = None,
        judge: Callable[[], dict[str, Any] | None] | None = None,
        judge_reviews: JudgeReviews | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.writer = writer
        self.panel = panel or NoConnector()
        self.registry = registry or (lambda: [])
        self._pipeline_source = pipeline or functools.cache(lambda: factory.pipeline(settings, db))
        self.models = models
        self.model_changes = model_changes or (lambda: ((), ()))
        self.duel = duel or (lambda: None)
        self.judge = judge or (lambda: None)  # the last cycle's judge watch (judge_watch.latest)
        self.judge_reviews = judge_reviews
        self.help_center = help_center
        self.digest_content = digest_content
        self.ready = ready or _already_ready()
        self._config_lock = threading.Lock()
        self._config: tuple[float, Settings] | None = None

    # --- configuration ---------------------------------------------------------------------

    def config(self) -> Settings:
        """Settings with the admin's App Home changes, re-read every few seconds."""
        with self._config_lock:
            if self._config and time.monotonic() - self._config[0] < CONFIG_TTL_S:
                return self._config[1]
        with self.db.connection() as conn:
            current = overrides.effective(self.settings, conn)
        with self._config_lock:
            self._config = (time.monotonic(), current)
        return current

    def save_config(self, changes: dict[str, Any], by: str) -> None:
        with self.db.connection() as conn:
            overrides.save(conn, self.settings, changes, by)
        with self._config_lock:
            self._config = None
        self.directory.forget()

    # --- parts -----------------------------------------------------------------------------

    @cached_property
    def installation(self) -> InstallationState:
        return InstallationState(self.db)

    @cached_property
    def client(self) -> WebClient:
        return slack_api.web_client(self.settings, gate=self.installation.ensure_active)

    @cached_property
    def directory(self) -> Directory:
        return Directory(self.client, self.settings.slack_membership_ttl_s)

    @cached_property
    def access(self) -> Access:
        return Access(self.directory, self.config)

    @cached_property
    def cards(self) -> CardService:
        return CardService(self.db, self.client, self.directory, lambda: self.pipeline)

    @property
    def pipeline(self) -> DraftPipeline:
        return self._pipeline_source()

    @cached_property
    def digest(self) -> DigestService:
        return DigestService(self)

    @cached_property
    def recorder(self) -> FeedbackRecorder:
        return FeedbackRecorder(self.db, self.queue)

    def once(self, key: str, kind: str, user: str, work: Callable[[Any], object]) -> bool:
        """Run ``work`` (it queues a job on the connection it is given) unless ``key`` was seen:
        a Slack retry or a replayed request queues nothing. Both in one transaction, so a
        failure leaves neither and Slack's retry does the work."""
        with self.db.connection() as conn:
            if not bot_store.claim_request(conn, f"{kind}:{key}", kind, user):
                log.info("Slack request %s:%s seen before: nothing queued again", kind, key)
                return False
            work(conn)
        return True

    def search_kb(self, query: str, k: int = 20) -> list[RetrievedChunk]:
        """Knowledge-base chunks for the missing-knowledge search box."""
        return self.pipeline.retriever.search(query, k)

    # --- App Home --------------------------------------------------------------------------

    def home(self, user_id: str) -> HomeContent:
        since = datetime.now(UTC) - timedelta(days=30)
        with self.db.connection() as conn:
            stats = events.agent_stats(conn, user_id, since)
        admin = self.admin_panel() if self.access.is_admin(user_id) else None
        reviewer = admin is not None or self.access.is_manager(user_id)
        review = self._review(user_id) if reviewer else None
        return HomeContent(user_id, self.access.is_agent(user_id), stats, admin, review)

    def _review(self, user_id: str) -> ReviewPanel | None:
        """The judge's review queue of an admin or manager; App Home still draws without it
        if it cannot be read."""
        if self.judge_reviews is None:
            return None
        try:
            return self.judge_reviews.panel(user_id)
        except Exception:
            log.exception("could not read the judge's review queue for App Home")
            return None

    def _judge(self) -> dict[str, Any] | None:
        """The last cycle's judge, per rule; App Home still draws without it if unreadable."""
        try:
            return self.judge()
        except Exception:
            log.exception("could not read the judge's figures for App Home")
            return None

    def _duel(self) -> DuelPanel | None:
        """The live A/B test; App Home still draws without it if it cannot be read."""
        try:
            return self.duel()
        except Exception:
            log.exception("could not read the online A/B test for App Home")
            return None

    def admin_panel(self) -> AdminPanel:
        s = self.config()
        with self.db.connection() as conn:
            counts = bot_store.card_counts(conn)
            refused = bot_store.undelivered(conn)
            week, deliveries = digest_store.last_deliveries(conn)
        pending, history = self.model_changes()
        return AdminPanel(
            zendesk=self.panel.status(),
            routes=list(s.slack_routes),
            route_problems=self.panel.route_problems(s.slack_routes),
            default_channel=s.slack_default_channel,
            agents_group=s.slack_agents_usergroup,
            agents_channel=s.slack_agents_channel,
            admins=list(s.slack_admin_ids),
            admins_group=s.slack_admins_usergroup,
            managers=list(s.slack_manager_ids),
            managers_group=s.slack_managers_usergroup,
            digest_channel=s.slack_digest_channel,
            retrain_cron=s.retrain_cron,
            digest_cron=s.digest_cron,
            admin_notes=s.flywheel_admin_notes,
            next_retrain=_next_run(s.retrain_cron),
            next_digest=_next_run(s.digest_cron),
            registry=list(self.registry()),
            pending_models=pending,
            model_history=history,
            duel=self._duel(),
            judge=self._judge(),
            installation=self.installation.status(),
            cards=counts,
            undelivered=[(c.ticket_ref, c.last_error or "") for c in refused],
            last_digest=(
                (
                    week.isoformat(),
                    [(d.recipient, d.status, d.last_error or "") for d in deliveries],
                )
                if week
                else None
            ),
        )


def _already_ready() -> threading.Event:
    ready = threading.Event()
    ready.set()
    return ready


def _next_run(cron: str) -> datetime | None:
    return next_run(cron)
