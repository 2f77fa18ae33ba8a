"""The Bolt app: creates it and lets each surface register its listeners. Nothing else."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError

from bot import ask, home, installation, judge_review, modals, threads
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
        # what no listener handles reaches on_error, which acknowledges it: Bolt's default
        # answers 404 and logs a warning for every event type we do not subscribe to use
        raise_error_for_unhandled_request=True,
        logger=log,
    )
    installation.register(app, services)  # its middleware runs before every listener
    for surface in (threads, modals, home, judge_review, ask, digest_actions):
        surface.register(app, services)
    app.error(on_error)
    return app


def on_error(error: Exception, body: dict, response: BoltResponse | None) -> BoltResponse | None:
    """A well-formed request no listener handles is acknowledged (200); other unacknowledged
    failures answer 500, so Slack shows the user that it did not work (and retries)."""
    kind = body.get("type") or body.get("command") or "request"
    if isinstance(error, BoltUnhandledRequestError):
        log.debug("Slack %s acknowledged, not handled: %s", kind, _what(body))
        return BoltResponse(status=200, body="")
    log.error("Slack %s failed: %s", kind, error, exc_info=error)
    return None


def _what(body: dict) -> str:
    """The event type, action id or callback id that found no listener."""
    event = body.get("event")
    if isinstance(event, dict):
        return str(event.get("type"))
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return str(actions[0].get("action_id"))
    view = body.get("view")
    if isinstance(view, dict):
        return str(view.get("callback_id"))
    return str(body.get("callback_id") or body.get("action_id") or "")
