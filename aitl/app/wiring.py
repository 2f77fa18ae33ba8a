"""How the product rooms meet in one process: the Zendesk connector hands drafts to the
Slack bot, the bot writes adopted replies back through the connector, and the flywheel's
registry, queued model changes and digest reach the bot through its ports (``bot.ports``).
None of them imports another; they meet here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import procrastinate
import psycopg

from aitl.core.db import Database
from aitl.core.settings import Settings
from bot import home
from bot import store as bot_store
from bot.exceptions import HelpCenterRefused, HelpCenterUnavailable
from bot.handoff import SlackHandoff
from bot.home_views import DuelPanel, ModelEntry
from bot.judge_review_views import ReviewItem, ReviewPanel
from bot.services import BotServices
from connectors import exceptions as zendesk_errors
from connectors import routing, setup
from connectors import store as zendesk_store
from connectors.placeholder_values import ticket_values
from connectors.services import ZendeskServices
from flywheel import jobs, judge_review, judge_watch, store
from flywheel.digest.content import digest_of
from flywheel.digest.metrics import Window, last_full_week, week_of
from flywheel.digest.render import render_chart
from flywheel.digest.report import Digest
from flywheel.memory import MemoryBuilder, build_memory
from flywheel.online import OnlineDecision
from flywheel.registry import KINDS
from flywheel.replies import record_sent_reply
from flywheel.services import FlywheelServices
from flywheel.serving import LivePipeline
from rag.exceptions import RagError
from rag.memory import FeedbackMemory
from rag.models import ZENDESK, TicketRef

log = logging.getLogger(__name__)


@dataclass
class Services:
    zendesk: ZendeskServices
    slack: BotServices | None  # when Slack is configured
    # set once the live models are loaded (see ``warm``); a process that never warms serves
    # as it always did, loading them on first use
    ready: threading.Event = field(default_factory=threading.Event)


# the feedback memory the live pipeline consults, from settings (None: drafts without it)
MemoryFactory = Callable[[Settings, Database], FeedbackMemory | None]


def live_pipeline(
    settings: Settings, db: Database, memory: MemoryFactory = build_memory
) -> LivePipeline:
    """What drafts are made with: the registry's champions, steered by the feedback memory."""
    return LivePipeline(settings, db, memory=memory(settings, db))


def build_services(
    settings: Settings,
    db: Database,
    queue: procrastinate.App,
    *,
    memory: MemoryFactory = build_memory,
) -> Services:
    ready = threading.Event()
    ready.set()
    # the registry's champions, shared by both, steered by the memory of similar tickets
    pipeline = live_pipeline(settings, db, memory)
    zendesk = ZendeskServices(settings, db, queue, pipeline=pipeline)
    zendesk.sent_replies = record_sent_reply  # each reply sent becomes feedback
    if not settings.slack_configured:
        return Services(zendesk, None, ready)
    slack = BotServices(
        settings,
        db,
        queue,
        digest_content=FlywheelDigest(db),
        ready=ready,
        writer=lambda: zendesk.writeback,
        panel=ZendeskPanel(zendesk),
        registry=lambda: registry_entries(db),
        pipeline=pipeline,
        models=QueuedModelChanges(queue),
        help_center=ZendeskHelpCenter(zendesk),
        model_changes=lambda: model_changes(db),
        duel=lambda: duel_panel(settings, db),
        judge_reviews=JudgeReviewQueue(settings, db),
        judge=lambda: judge_panel(db),
    )
    zendesk.handoff = SlackHandoff(slack)
    return Services(zendesk, slack, ready)


def warm(services: Services) -> None:
    """Load the live pipeline's models; ``services.ready`` is clear meanwhile, so /healthz says
    "starting" and a knowledge-base search does not wait past Slack's limit for them. A
    knowledge base with nothing embedded yet has nothing to warm: said, and served anyway."""
    services.ready.clear()
    started = time.monotonic()
    try:
        services.zendesk.pipeline().warm()
        log.info("models loaded and warmed in %.1f s", time.monotonic() - started)
    except RagError as exc:
        log.warning("models not warmed (%s): the first search will load them", exc)
    finally:
        services.ready.set()


class FlywheelDigest:
    """The digest's content as the flywheel reads it, with the replies sent as the Zendesk
    connector counts them, for the bot to send."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def week(self, day: date | None, now: datetime) -> Window:
        return week_of(day) if day else last_full_week(now)

    def build(self, settings: Settings, week: Window) -> Digest:
        return digest_of(settings, self.db, week, sent_adoption=zendesk_store.sent_adoption)

    def chart(self, digest: Digest) -> bytes:
        return render_chart(digest)


class QueuedModelChanges:
    """App Home's Retrain now / Promote / Roll back, run by the worker with the same functions
    as the CLI."""

    def __init__(self, queue: procrastinate.App) -> None:
        self.queue = queue

    def retrain(self, by: str, conn: psycopg.Connection | None = None) -> bool:
        return jobs.defer_cycle(self.queue, "app_home", by=by, conn=conn)

    def promote(
        self, kind: str, version: str, by: str, conn: psycopg.Connection | None = None
    ) -> bool:
        change = {"kind": kind, "version": version, "by": by}
        return jobs.defer_model_change(self.queue, "promote", conn, **change) is not None

    def rollback(
        self, kind: str, version: str, by: str, conn: psycopg.Connection | None = None
    ) -> bool:
        change = {"kind": kind, "version": version, "by": by}
        return jobs.defer_model_change(self.queue, "rollback", conn, **change) is not None


class ZendeskPanel:
    """The connector as App Home shows it to admins."""

    def __init__(self, zendesk: ZendeskServices) -> None:
        self.zendesk = zendesk

    def status(self) -> dict[str, Any]:
        try:
            self.zendesk.credentials()
        except zendesk_errors.NotConnected:
            return {}
        return setup.status(self.zendesk)

    def route_problems(self, routes: Sequence[dict[str, str]]) -> list[str]:
        return routing.validate(routes)


class ZendeskHelpCenter:
    """Help Center drafts from the digest's gaps, with the connector's errors in bot terms."""

    def __init__(self, zendesk: ZendeskServices) -> None:
        self.zendesk = zendesk

    def draft_article(self, title: str, body_html: str) -> tuple[int, str]:
        try:
            return self.zendesk.draft_article(title, body_html)
        except zendesk_errors.ZendeskUnavailable as exc:
            raise HelpCenterUnavailable(str(exc)) from exc
        except zendesk_errors.ConnectorError as exc:  # not connected, no section, refused
            raise HelpCenterRefused(str(exc)) from exc


def registry_entries(db: Database) -> list[ModelEntry]:
    """The model registry as App Home lists it."""
    with db.connection() as conn:
        rows = store.models(conn)
        back_to = store.rollback_targets(conn, KINDS)
    shown = [r for r in rows if r.status in ("champion", "challenger")]
    return [
        ModelEntry(
            r.kind,
            r.version,
            r.status,
            _numbers(r.metrics),
            r.created_at,
            replaces=back_to.get(r.kind) if r.status == "champion" else None,
        )
        for r in shown
    ]


def duel_panel(settings: Settings, db: Database) -> DuelPanel | None:
    """The generators' online A/B test as App Home shows it (None: no challenger drafts)."""
    duel = OnlineDecision.reading(settings, db).state()
    if duel is None:
        return None
    preference, adoption = duel.preference, duel.adoption
    return DuelPanel(
        champion=duel.champion,
        challenger=duel.challenger,
        duels=preference.duels,
        win_rate=preference.win_rate,
        low=preference.low,
        high=preference.high,
        state=duel.reason,
        adoptions=adoption.duels,
        adoption_rate=adoption.win_rate,
        decided=duel.decided,
    )


def judge_panel(db: Database) -> dict[str, Any] | None:
    """The last cycle's judge against the cycles before, as App Home shows it."""
    with db.connection() as conn:
        return judge_watch.latest(store.runs(conn, judge_watch.WATCHED_RUNS + 1))


class JudgeReviewQueue:
    """App Home's review queue of the judge: the flywheel samples the latest cycle's verdicts
    on clicks whose card the bot still has, and stores the answers."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def panel(self, reviewer: str) -> ReviewPanel:
        since = datetime.now(UTC) - timedelta(days=7)  # bot.judge_review_views.PERIOD
        with self.db.connection() as conn:
            run_id, items = judge_review.review_queue(
                conn,
                reviewer,
                size=self.settings.judge_review_sample,
                seed=self.settings.flywheel_seed,
                shown=lambda set_ids: bot_store.sets_with_cards(conn, sorted(set_ids)),
            )
            agreement = judge_review.agreement_summary(conn, since)
        # the flywheel's items, field for field (tests/flywheel/test_judge_review.py checks)
        return ReviewPanel(run_id, [ReviewItem(**asdict(i)) for i in items], agreement)

    def verdict(self, run_id: int, event_id: int) -> bool | None:
        with self.db.connection() as conn:
            return store.verdict_kept(conn, run_id, event_id)

    def record(
        self,
        conn: psycopg.Connection,
        run_id: int,
        event_id: int,
        reviewer: str,
        agrees: bool,
        at: datetime,
    ) -> bool:
        return store.save_review(conn, run_id, event_id, reviewer, agrees, at)


def model_changes(
    db: Database, recent: int = 5
) -> tuple[list[jobs.PendingChange], list[store.ModelChange]]:
    """Promotions and rollbacks waiting for the worker, and the latest ones done, for App Home."""
    with db.connection() as conn:
        return jobs.pending_model_changes(conn), store.model_changes(conn, limit=recent)


def flywheel_services(
    settings: Settings, db: Database, slack: BotServices | None
) -> FlywheelServices:
    """The flywheel as the worker runs it: it tells admins in Slack how a cycle or the model
    change they asked for ended (without Slack, it is logged)."""
    if slack is None:
        return FlywheelServices(settings, db)
    return FlywheelServices(
        settings,
        db,
        tell=lambda user, text: home.tell(slack, user, text),
        admins=slack.access.admins,
    )


def memory_builder(settings: Settings, db: Database) -> MemoryBuilder:
    """The feedback memory's builder, told each Zendesk ticket's brand (the connectors' to
    know), so a brand's tickets vote on that brand's drafts, and each ticket's placeholder
    values, so a reply it keeps is made fit for another customer."""

    def brands(refs: Sequence[str]) -> dict[str, str]:
        found = {}
        with db.connection() as conn:
            for ref in refs:
                number = TicketRef.parse(ref).zendesk_id
                ticket = zendesk_store.ticket(conn, number) if number is not None else None
                if ticket is not None and ticket.brand_id is not None:
                    found[ref] = str(ticket.brand_id)
        return found

    return MemoryBuilder(
        settings, db, brands=brands, placeholders=lambda refs: ticket_placeholder_values(db, refs)
    )


def ticket_placeholder_values(db: Database, refs: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each ticket's placeholder values as its drafts rendered them (the stored ticket as it
    stands now): {} for a question asked in Slack, which has no customer; a Zendesk ticket
    no longer stored is left out (its reply cannot be made fit for another customer)."""
    found: dict[str, dict[str, str]] = {}
    with db.connection() as conn:
        for ref in refs:
            parsed = TicketRef.parse(ref)
            if parsed.source != ZENDESK:
                found[ref] = {}
            elif parsed.zendesk_id is not None:
                ticket = zendesk_store.ticket(conn, parsed.zendesk_id)
                if ticket is not None:
                    found[ref] = ticket_values(ticket)
    return found


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
