"""Listener middleware: only agents annotate, only admins configure. A refusal is explained
to the user privately and nothing is recorded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse

from bot import payloads, replies
from bot.access import NOT_A_MANAGER, NOT_AN_ADMIN
from bot.exceptions import BotError

log = logging.getLogger(__name__)
UNVERIFIED = "I could not check your access with Slack just now. Nothing was recorded; try again."


def agents_only(services: Any) -> Callable[..., BoltResponse | None]:
    def guard(body: dict, respond, next) -> BoltResponse | None:
        return _guard(
            services, body, respond, next, services.access.is_agent, services.access.refusal
        )

    return guard


def admins_only(services: Any) -> Callable[..., BoltResponse | None]:
    def guard(body: dict, respond, next) -> BoltResponse | None:
        return _guard(services, body, respond, next, services.access.is_admin, lambda: NOT_AN_ADMIN)

    return guard


def managers_only(
    services: Any, refusal: str = NOT_A_MANAGER
) -> Callable[..., BoltResponse | None]:
    """Managers and admins: the digest's full report (it names agents), reviews of the judge."""

    def allowed(user: str) -> bool:
        return services.access.is_manager(user) or services.access.is_admin(user)

    def guard(body: dict, respond, next) -> BoltResponse | None:
        return _guard(services, body, respond, next, allowed, lambda: refusal)

    return guard


def _guard(services, body, respond, proceed, allowed, refusal) -> BoltResponse | None:
    user = payloads.user_id(body)
    try:
        ok = allowed(user)
        message = None if ok else refusal()
    except BotError as exc:
        log.warning("could not check %s's access: %s", user, exc)
        ok, message = False, UNVERIFIED
    if ok:
        proceed()
        return None
    log.info("refused %s: %s", user, body.get("type"))
    return _refuse(services, body, respond, message)


def _refuse(services: Any, body: dict, respond, message: str) -> BoltResponse:
    if body.get("type") == "view_submission":
        first = next(iter(payloads.state_values(body)), None)
        if first:
            errors = {first: message[:150]}
            return BoltResponse(
                status=200,
                body={"response_action": "errors", "errors": errors},
            )
    if body.get("command"):
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": message})
    if body.get("type") in ("block_actions", "shortcut", "message_action"):
        # in a message: an ephemeral note; in App Home or a modal (no response_url): a DM
        replies.tell(services.client, body, respond, message)
    return BoltResponse(status=200, body="")
