"""App Home: every user sees their own figures; admins also see and edit the set-up."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from aitl.core.overrides import InvalidOverride
from bot import actions, payloads, replies, slack_api
from bot.exceptions import BotError, MalformedPayload
from bot.guards import admins_only
from bot.home_views import (
    PROMOTE,
    RETRAIN,
    ROLL_BACK,
    home_view,
    parse_routes,
    people_modal,
    routing_modal,
    schedule_modal,
)
from bot.services import BotServices

log = logging.getLogger(__name__)
NO_REGISTRY = "This AITL runs without a model registry here, so nothing was queued."
FIELD_BLOCKS = {
    "slack_agents_usergroup": actions.AGENTS_GROUP,
    "slack_agents_channel": actions.AGENTS_CHANNEL,
    "slack_manager_ids": actions.MANAGERS,
    "slack_managers_usergroup": actions.MANAGERS_GROUP,
    "slack_digest_channel": actions.DIGEST_CHANNEL,
    "slack_default_channel": actions.DEFAULT_CHANNEL,
    "slack_routes": actions.ROUTES,
    "retrain_cron": actions.RETRAIN_CRON,
    "digest_cron": actions.DIGEST_CRON,
    "flywheel_admin_notes": actions.ADMIN_NOTES,
}


def register(app: App, services: BotServices) -> None:
    app.event("app_home_opened")(on_home_opened(services))
    app.action(actions.HOME_REFRESH)(on_refresh(services))
    guard = [admins_only(services)]
    for action_id, modal in (
        (actions.ADMIN_PEOPLE, people_modal),
        (actions.ADMIN_ROUTING, routing_modal),
        (actions.ADMIN_SCHEDULE, schedule_modal),
    ):
        app.action(action_id, middleware=guard)(on_edit(services, modal))
    app.action(PROMOTE, middleware=guard)(on_model_change(services, "promote"))
    app.action(ROLL_BACK, middleware=guard)(on_model_change(services, "rollback"))
    app.action(RETRAIN, middleware=guard)(on_retrain(services))
    app.view(actions.ADMIN_PEOPLE, middleware=guard)(on_save(services, _people_changes))
    app.view(actions.ADMIN_ROUTING, middleware=guard)(on_save(services, _routing_changes))
    app.view(actions.ADMIN_SCHEDULE, middleware=guard)(on_save(services, _schedule_changes))


def publish(services: BotServices, user_id: str) -> None:
    view = home_view(services.home(user_id))
    slack_api.call(services.client.views_publish, user_id=user_id, view=view.to_dict())


def republish(services: BotServices, user_id: str) -> None:
    """Publish, and log rather than fail when Slack will not take it."""
    try:
        publish(services, user_id)
    except BotError as exc:
        log.warning("App Home for %s not published: %s", user_id, exc)


def tell(services: BotServices, user_id: str, text: str) -> None:
    """A direct message to ``user_id`` (from the worker: how their model change ended), and
    their App Home published again to show it."""
    slack_api.direct_message(services.client, user_id, text)
    republish(services, user_id)


def on_home_opened(services: BotServices):
    def listener(event: dict) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            republish(services, event["user"])

    return listener


def on_refresh(services: BotServices):
    def listener(ack, body: dict) -> None:
        ack()
        republish(services, payloads.user_id(body))

    return listener


def on_edit(services: BotServices, modal: Callable[..., Any]):
    def listener(ack, body: dict) -> None:
        ack()
        slack_api.open_modal(services.client, body, modal(services.admin_panel()))

    return listener


def on_model_change(services: BotServices, change: str):
    """Promote or Roll back from App Home: checked against the registry at the ack, queued
    once for the worker (which tells the admin how it ended); meanwhile Home shows it queued."""

    def listener(ack, body: dict, respond) -> None:
        user = payloads.user_id(body)
        if services.models is None:
            ack()
            replies.tell(services.client, body, respond, NO_REGISTRY)
            return
        try:
            target = model_target(services, payloads.first_action(body).get("value"), change)
        except BotError as exc:
            ack()
            replies.tell(services.client, body, respond, f"Nothing was queued: {exc}")
            republish(services, user)
            return
        models = services.models
        queue = models.promote if change == "promote" else models.rollback
        services.once(
            payloads.request_key(body),
            change,
            user,
            lambda conn: queue(target.kind, target.version, user, conn),
        )
        ack()
        log.info("%s of %s %s queued by %s", change, target.kind, target.version, user)
        republish(services, user)  # the change shows as queued, its kind's buttons held back

    return listener


@dataclass(frozen=True)
class ModelTarget:
    kind: str
    version: str


MODEL_VALUE = re.compile(r"([a-z_]{1,32}):([A-Za-z0-9][A-Za-z0-9._:-]{0,199})")
WANTED = {"promote": "challenger", "rollback": "champion"}


def model_target(services: BotServices, value: object, change: str) -> ModelTarget:
    """The model a Promote or Roll back button names, if it is still what the button offered
    (a challenger to promote, the champion to roll back); BotError with the reason if not."""
    found = MODEL_VALUE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise MalformedPayload(f"the button names no model ({str(value)[:40]!r})")
    target = ModelTarget(found.group(1), found.group(2))
    wanted = WANTED[change]
    if not any(
        (e.kind, e.version, e.status) == (target.kind, target.version, wanted)
        for e in services.registry()
    ):
        raise BotError(f"the {target.kind} `{target.version}` is no longer the {wanted}")
    return target


def on_retrain(services: BotServices):
    """Retrain now from App Home: a cycle queued once for the worker; the admins get its result."""

    def listener(ack, body: dict, respond) -> None:
        user = payloads.user_id(body)
        if services.models is None:
            ack()
            replies.tell(services.client, body, respond, NO_REGISTRY)
            return
        models = services.models
        services.once(
            payloads.request_key(body), "retrain", user, lambda conn: models.retrain(user, conn)
        )
        ack()
        log.info("retrain queued by %s", user)
        republish(services, user)

    return listener


Changes = tuple[dict[str, Any], dict[str, str]]


def on_save(services: BotServices, read: Callable[[BotServices, dict], Changes]):
    def listener(ack, body: dict) -> None:
        changes, errors = read(services, payloads.state_values(body))
        if not errors:
            try:
                services.save_config(changes, by=payloads.user_id(body))
            except InvalidOverride as exc:
                fallback = FIELD_BLOCKS[next(iter(changes))]
                errors = {FIELD_BLOCKS.get(k, fallback): v[:150] for k, v in exc.problems.items()}
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        republish(services, payloads.user_id(body))

    return listener


def _text(values: dict, block_id: str) -> str | None:
    value = payloads.input_value(values, block_id)
    return value.strip() or None if isinstance(value, str) else None


def _people_changes(services: BotServices, values: dict) -> Changes:
    changes = {
        "slack_agents_usergroup": _text(values, actions.AGENTS_GROUP),
        "slack_agents_channel": payloads.input_value(values, actions.AGENTS_CHANNEL),
        "slack_manager_ids": payloads.input_value(values, actions.MANAGERS) or [],
        "slack_managers_usergroup": _text(values, actions.MANAGERS_GROUP),
        "slack_digest_channel": payloads.input_value(values, actions.DIGEST_CHANNEL),
    }
    errors = {}
    for key, block in (
        ("slack_agents_usergroup", actions.AGENTS_GROUP),
        ("slack_managers_usergroup", actions.MANAGERS_GROUP),
    ):
        group = changes[key]
        if group and not group.startswith("S"):
            errors[block] = "A user group id starts with S (see the group's profile)."
    return changes, errors


def _routing_changes(services: BotServices, values: dict) -> Changes:
    rules, problems = parse_routes(payloads.input_value(values, actions.ROUTES) or "")
    problems += services.panel.route_problems(rules)
    changes = {
        "slack_default_channel": payloads.input_value(values, actions.DEFAULT_CHANNEL),
        "slack_routes": rules,
    }
    return changes, ({actions.ROUTES: "; ".join(problems)[:150]} if problems else {})


def _schedule_changes(services: BotServices, values: dict) -> Changes:
    changes = {
        "retrain_cron": _text(values, actions.RETRAIN_CRON),
        "digest_cron": _text(values, actions.DIGEST_CRON),
    }
    errors = {FIELD_BLOCKS[k]: "Required." for k, v in changes.items() if not v}
    notes = payloads.input_value(values, actions.ADMIN_NOTES)
    if notes is not None:  # a modal opened before this choice existed leaves it as it was
        changes["flywheel_admin_notes"] = notes
    return changes, errors
