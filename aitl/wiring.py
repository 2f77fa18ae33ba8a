"""How the product packages meet in one process: the Zendesk connector hands drafts to the
Slack bot, and the bot writes adopted replies back through the connector. Neither imports
the other; they meet here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import procrastinate

from aitl.db import Database
from aitl.settings import Settings


@dataclass
class Services:
    zendesk: Any  # connectors.services.ZendeskServices
    slack: Any | None  # bot.services.BotServices, when Slack is configured


def build_services(settings: Settings, db: Database, queue: procrastinate.App) -> Services:
    from connectors.services import ZendeskServices

    zendesk = ZendeskServices(settings, db, queue)
    if not settings.slack_configured:
        return Services(zendesk, None)
    from bot.handoff import SlackHandoff
    from bot.services import BotServices

    slack = BotServices(
        settings, db, queue, writer=lambda: zendesk.writeback, panel=ZendeskPanel(zendesk)
    )
    zendesk.handoff = SlackHandoff(slack)
    return Services(zendesk, slack)


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
