"""The Bolt app: creates it and lets each surface register its listeners. Nothing else."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltResponse

from bot import ask, home, modals, threads
from bot.digest import actions as digest_actions
from bot.services import BotServices

log = logging.getLogger(__name__)


def create_bolt_app(services: BotServices) -> App:
    s = services.settings
    app = App(  # the client carries the bot token
        signing_secret=s.slack_signing_secret.get_secret_value() if s.slack_signing_secret else "",
        client=services.client,
        token_verification_enabled=False,  # no call to Slack at start-up: it may be down
        # listeners record, then ack: run them in the request's thread rather than having
        # Bolt poll another thread for the ack every 10 ms
        process_before_response=True,
        logger=log,
    )
    for surface in (threads, modals, home, ask, digest_actions):
        surface.register(app, services)
    app.error(on_error)
    return app


def on_error(error: Exception, body: dict, response: BoltResponse | None) -> None:
    """Unacknowledged failures answer 500, so Slack shows the user that it did not work."""
    kind = body.get("type") or body.get("command") or "request"
    log.error("Slack %s failed: %s", kind, error, exc_info=error)
