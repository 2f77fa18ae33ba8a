"""The app's own life in the workspace, as Slack reports it to the Events API URL.

- ``app_rate_limited``: Slack dropped our events for a minute (too many for the app). Recorded,
  acknowledged, and shown to admins in App Home and by ``aitl slack status``.
- ``app_uninstalled``, and ``tokens_revoked`` naming the bot's token: the bot may no longer
  post. Every Web API call then raises SlackAppInactive (a job ends at once with that reason
  instead of retrying for hours) until the app is back: Slack sends us a request again, or
  ``aitl slack status`` finds the token working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App, BoltResponse

from aitl.core.db import Database
from bot import store as bot_store
from bot.exceptions import SlackAppInactive

log = logging.getLogger(__name__)
TTL_S = 10.0  # how long a process trusts what it last read of the installation
RECENT = timedelta(days=7)
GONE_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})


class InstallationState:
    """Whether the app may post, read from the database every few seconds at most."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, bool] | None = None

    def status(self, now: datetime | None = None) -> bot_store.Installation:
        with self.db.connection() as conn:
            return bot_store.installation(conn, (now or datetime.now(UTC)) - RECENT)

    def active(self) -> bool:
        with self._lock:
            if self._cached and self.clock() - self._cached[0] < TTL_S:
                return self._cached[1]
        active = self.status().active
        with self._lock:
            self._cached = (self.clock(), active)
        return active

    def forget(self) -> None:
        """Read the database on the next question (another process may have written it)."""
        with self._lock:
            self._cached = None

    def ensure_active(self) -> None:
        """The Web API's gate: SlackAppInactive while the app is uninstalled or revoked."""
        if not self.active():
            raise SlackAppInactive()

    def note(self, kind: str, team_id: str = "", detail: dict[str, Any] | None = None) -> None:
        with self.db.connection() as conn:
            bot_store.add_installation_event(conn, kind, team_id, detail)
        self.forget()

    def back(self, team_id: str, why: str) -> None:
        """The app is installed again; say so once."""
        if not self.active():
            log.warning("the Slack app is back (%s): posting again", why)
            self.note("reinstalled", team_id, {"why": why})


def register(app: App, services: Any) -> None:
    app.use(protocol_middleware(services.installation))
    app.event("app_uninstalled")(on_uninstalled(services.installation))
    app.event("tokens_revoked")(on_tokens_revoked(services.installation))


def protocol_middleware(installation: InstallationState):
    """Before any listener: a rate-limit notice is recorded and acknowledged (it has no
    listener of its own in Bolt), and any other request from Slack proves the app is
    installed, so an app marked gone is marked back."""

    def middleware(body: dict, next: Callable[[], Any]) -> BoltResponse | None:
        team = _team(body)
        if body.get("type") == "app_rate_limited":
            minute = body.get("minute_rate_limited")
            log.warning("Slack rate-limited the app's events for the minute at %s", minute)
            installation.note("app_rate_limited", team, {"minute_rate_limited": minute})
            return BoltResponse(status=200, body="")
        if _event_type(body) not in GONE_EVENTS:
            installation.back(team, f"Slack sent a {body.get('type') or 'command'}")
        return next()

    return middleware


def on_uninstalled(installation: InstallationState):
    def listener(body: dict) -> None:
        log.warning("the Slack app was uninstalled: nothing is posted until it is reinstalled")
        installation.note("app_uninstalled", _team(body))

    return listener


def on_tokens_revoked(installation: InstallationState):
    def listener(body: dict, event: dict) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        bots = tokens.get("bot") if isinstance(tokens.get("bot"), list) else []
        if not bots:  # only user tokens: the bot never holds one
            return
        log.warning("the Slack app's bot token was revoked: nothing is posted until reinstalled")
        installation.note("tokens_revoked", _team(body), {"bot": [str(b) for b in bots]})

    return listener


def _team(body: dict) -> str:
    team = body.get("team_id") or body.get("team") or ""
    return str(team.get("id", "") if isinstance(team, dict) else team)


def _event_type(body: dict) -> str | None:
    event = body.get("event")
    return event.get("type") if isinstance(event, dict) else None
