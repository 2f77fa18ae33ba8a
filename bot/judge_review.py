"""App Home's review queue: an admin or a manager says whether the judge was right about a
click (**Judge is right** / **Judge is wrong**).

The answer is stored before Slack gets its ack, once per click (the request's key is claimed in
the transaction that stores it, so Slack's retries store nothing again), and a later answer on
the same event replaces the earlier one. App Home is published again after the ack (a lazy
listener: building Home reads the registry and Zendesk, which may take longer than Slack's
3 s), without the item just answered. A button value that names no verdict is refused (also
at the endpoint, 400), and one naming a verdict its run does not hold is explained; neither
stores anything.
"""

from __future__ import annotations

import logging

from slack_bolt import App

from bot import home, payloads, replies
from bot.access import NOT_A_REVIEWER
from bot.exceptions import BotError
from bot.guards import managers_only
from bot.judge_review_views import AGREE, DISAGREE, ReviewValue
from bot.services import BotServices

log = logging.getLogger(__name__)
NO_QUEUE = "This AITL keeps no review queue of the judge here, so nothing was recorded."
STALE = "run {run}'s judge gave no verdict on click {event} (App Home shows the current queue)"


def register(app: App, services: BotServices) -> None:
    guard = [managers_only(services, NOT_A_REVIEWER)]
    for action_id, agrees in ((AGREE, True), (DISAGREE, False)):
        app.action(action_id, middleware=guard)(
            ack=on_review(services, agrees), lazy=[republish_home(services)]
        )


def on_review(services: BotServices, agrees: bool):
    def listener(ack, body: dict, respond) -> None:
        user = payloads.user_id(body)
        action = payloads.first_action(body)
        reviews = services.judge_reviews
        if reviews is None:
            ack()
            replies.tell(services.client, body, respond, NO_QUEUE)
            return
        try:
            target = ReviewValue.decode(action.get("value"))
            if reviews.verdict(target.run_id, target.event_id) is None:
                raise BotError(STALE.format(run=target.run_id, event=target.event_id))
        except BotError as exc:
            ack()
            log.info("review by %s refused: %s", user, exc)
            replies.tell(services.client, body, respond, f"Nothing was recorded: {exc}.")
            return
        at = payloads.clicked_at(action)
        services.once(
            payloads.request_key(body),
            "judge_review",
            user,
            lambda conn: reviews.record(conn, target.run_id, target.event_id, user, agrees, at),
        )
        ack()
        log.info(
            "%s %s the judge on event %s of run %s",
            user,
            "agrees with" if agrees else "disagrees with",
            target.event_id,
            target.run_id,
        )

    return listener


def republish_home(services: BotServices):
    """After the ack: Home again, without the item answered (or, refused, as it stands)."""

    def publish(body: dict) -> None:
        try:
            home.republish(services, payloads.user_id(body))
        except Exception:  # a thread of Bolt's: nobody else would see it
            log.exception("App Home not published after a review")

    return publish
