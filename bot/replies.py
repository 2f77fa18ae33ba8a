"""Private notes to the person who acted: why a click did nothing, or what became of it.

Slack gives a response_url with clicks in messages and with slash commands: the note is an
ephemeral message there. App Home and modals give none, so the note is a direct message from
the app. Telling is best effort: the refusal or the recorded click stands either way.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot import payloads, slack_api
from bot.exceptions import BotError

log = logging.getLogger(__name__)


def tell(client: WebClient, body: dict[str, Any], respond: Any, text: str) -> None:
    user = payloads.user_id(body)
    try:
        if payloads.response_url(body) and respond is not None:
            respond(text=text, response_type="ephemeral", replace_original=False)
        else:
            slack_api.direct_message(client, user, text)
    except (BotError, OSError, ValueError) as exc:
        log.warning("could not tell %s %r: %s", user, text, exc)
