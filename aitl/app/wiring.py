"""How the product packages meet in one process: the Zendesk connector hands drafts to the
Slack bot, and the bot writes adopted replies back through the connector. Neither imports
the other; they meet here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import procrastinate

from aitl.core.db import Database
from aitl.core.settings import Settings


@dataclass
class Services:
    zendesk: Any  # connectors.services.ZendeskServices
    slack: Any | None  # bot.services.BotServices, when Slack is configured


def build_services(settings: Settings, db: Database, queue: procrastinate.App) -> Services:
    from connectors.services import ZendeskServices
    from flywheel.serving import LivePipeline

    pipeline = LivePipeline(settings, db)  # the registry's champions, shared by both
    zendesk = ZendeskServices(settings, db, queue, pipeline=pipeline)
    if not settings.slack_configured:
        return Services(zendesk, None)
    from bot.handoff import SlackHandoff
    from bot.services import BotServices

    slack = BotServices(
        settings,
        db,
        queue,
        writer=lambda: zendesk.writeback,
        panel=ZendeskPanel(zendesk),
        registry=lambda: registry_entries(db),
        pipeline=pipeline,
        models=QueuedModelChanges(queue),
        help_center=ZendeskHelpCenter(zendesk),
        model_changes=lambda: model_changes(db),
    )
    zendesk.handoff = SlackHandoff(slack)
    return Services(zendesk, slack)


class QueuedModelChanges:
    """App Home's Retrain now / Promote / Roll back, run by the worker with the same functions
    as the CLI."""

    def __init__(self, queue: procrastinate.App) -> None:
        self.queue = queue

    def retrain(self, by: str) -> None:
        from flywheel import jobs

        jobs.defer_cycle(self.queue, "app_home", by=by)

    def promote(self, kind: str, version: str, by: str) -> None:
        from flywheel import jobs

        jobs.defer_model_change(self.queue, "promote", kind=kind, version=version, by=by)

    def rollback(self, kind: str, version: str, by: str) -> None:
        from flywheel import jobs

        jobs.defer_model_change(self.queue, "rollback", kind=kind, version=version, by=by)


class ZendeskPanel:
    """The connector as App Home shows it to admins."""

    def __init__(self, zendesk: Any) -> None:
        self.zendesk = zendesk

    def status(self) -> dict[str, Any]:
        from connectors import exceptions, setup

        try:
            self.zendesk.credentials()
        except exceptions.NotConnected:
            return {}
        return setup.status(self.zendesk)

    def route_problems(self, routes: Sequence[dict[str, str]]) -> list[str]:
        from connectors import routing

        return routing.validate(routes)


class ZendeskHelpCenter:
    """Help Center drafts from the digest's gaps, with the connector's errors in bot terms."""

    def __init__(self, zendesk: Any) -> None:
        self.zendesk = zendesk

    def draft_article(self, title: str, body_html: str) -> tuple[int, str]:
        from bot.exceptions import HelpCenterRefused, HelpCenterUnavailable
        from connectors import exceptions

        try:
            return self.zendesk.draft_article(title, body_html)
        except exceptions.ZendeskUnavailable as exc:
            raise HelpCenterUnavailable(str(exc)) from exc
        except exceptions.ConnectorError as exc:  # not connected, no section, refused
            raise HelpCenterRefused(str(exc)) from exc


def registry_entries(db: Database) -> list[Any]:
    """The model registry as App Home lists it."""
    from bot.home_views import ModelEntry
    from flywheel import store
    from flywheel.registry import KINDS

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


def model_changes(db: Database, recent: int = 5) -> tuple[list[Any], list[Any]]:
    """Promotions and rollbacks waiting for the worker, and the latest ones done, for App Home."""
    from flywheel import jobs, store

    with db.connection() as conn:
        return jobs.pending_model_changes(conn), store.model_changes(conn, limit=recent)


def flywheel_services(settings: Settings, db: Database, slack: Any | None) -> Any:
    """The flywheel as the worker runs it: it tells admins in Slack how a cycle or the model
    change they asked for ended (without Slack, it is logged)."""
    from flywheel.services import FlywheelServices

    if slack is None:
        return FlywheelServices(settings, db)
    from bot import home

    return FlywheelServices(
        settings,
        db,
        tell=lambda user, text: home.tell(slack, user, text),
        admins=slack.access.admins,
    )


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
