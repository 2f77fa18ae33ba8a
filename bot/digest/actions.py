"""The digest's buttons: Open full report (managers, admins) and Draft article (admins)."""

from __future__ import annotations

import logging
from datetime import date

from slack_bolt import App

from bot import payloads, replies, slack_api
from bot.digest import jobs as digest_jobs
from bot.digest.views import DRAFT_ARTICLE, OPEN_REPORT
from bot.exceptions import BotError
from bot.guards import admins_only, managers_only
from bot.services import BotServices

log = logging.getLogger(__name__)


def register(app: App, services: BotServices) -> None:
    app.action(OPEN_REPORT, middleware=[managers_only(services)])(on_open_report(services))
    app.action(DRAFT_ARTICLE, middleware=[admins_only(services)])(on_draft_article(services))


def on_open_report(services: BotServices):
    def listener(ack, body: dict, respond) -> None:
        ack()
        week = _week(payloads.first_action(body).get("value"))
        try:
            if week is None:
                raise BotError("this button does not name a week")
            view = services.digest.report_view(week, payloads.user_id(body))
        except BotError as exc:
            _tell(services, respond, body, f"The full report cannot be shown: {exc}")
            return
        slack_api.open_modal(services.client, body, view)

    return listener


def on_draft_article(services: BotServices):
    """Record the request and queue the worker; the modal shows where it stands."""

    def listener(ack, body: dict, respond) -> None:
        week_text, _, key = str(payloads.first_action(body).get("value") or "").partition(":")
        week = _week(week_text)
        user = payloads.user_id(body)
        if week is None or not key:
            ack()
            _tell(services, respond, body, "No draft was made: the button names no knowledge gap.")
            return
        try:
            services.digest.request_article(
                week,
                key,
                user,
                lambda conn: digest_jobs.defer_draft_article(services.queue, conn, key, user),
            )
        except BotError as exc:
            ack()
            _tell(services, respond, body, f"No draft was made: {exc}")
            return
        ack()
        view = body.get("view") or {}
        if view.get("id"):
            try:
                updated = services.digest.report_view(week, user)
                slack_api.call(
                    services.client.views_update,
                    view_id=view["id"],
                    hash=view.get("hash"),
                    view=updated.to_dict(),
                )
            except BotError as exc:  # the modal was closed or changed meanwhile
                log.info("digest modal not updated: %s", exc)

    return listener


def _week(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _tell(services: BotServices, respond, body: dict, text: str) -> None:
    log.info("%s (to %s)", text, payloads.user_id(body))
    replies.tell(services.client, body, respond, text)
