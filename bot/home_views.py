"""Block Kit for App Home: an agent's own figures, and for admins the whole set-up (connectors,
routing, people, schedule, model registry) with buttons that open the edit modals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ChannelSelectElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UserMultiSelectElement,
)
from slack_sdk.models.views import View

from bot import actions
from bot.card_views import escape, escape_keeping_mentions
from bot.judge_review_views import ReviewPanel, review_blocks
from bot.ports import ModelChange, PendingChange
from bot.store import Installation
from flywheel.digest.report import judge_lines
from flywheel.events import AgentStats

# settings.flywheel_admin_notes, as an admin chooses it
ADMIN_NOTE_CHOICES = {
    "all": "every retrain",
    "changes": "a model going live, or a failure",
    "failures": "failures only",
    "none": "nothing (whoever asked still hears)",
}
# the flywheel carries these out, in the worker
PROMOTE, ROLL_BACK, RETRAIN = "aitl.admin.promote", "aitl.admin.rollback", "aitl.admin.retrain"
ROUTE_KEYS = {"brand": "brand_id", "group": "group_id", "tag": "tag"}


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model registry as the flywheel reports it."""

    kind: str
    version: str
    status: str  # 'champion', 'challenger', 'retired'
    metrics: dict[str, float] = field(default_factory=dict)
    created_at: datetime | None = None
    replaces: str | None = None  # a champion's predecessor, what Roll back brings back


@dataclass(frozen=True)
class DuelPanel:
    """The running online A/B test of the generators, as the flywheel reports it."""

    champion: str
    challenger: str
    duels: int  # Prefer clicks on champion-vs-challenger cards ("both bad" left out)
    win_rate: float | None  # the challenger's, a tie counting half
    low: float | None  # the always-valid interval of the win rate
    high: float | None
    state: str  # what the test says now, in words
    adoptions: int = 0
    adoption_rate: float | None = None  # the challenger's share of the drafts used
    decided: str | None = None  # 'promoted' / 'retired' once the test has acted


@dataclass(frozen=True)
class AdminPanel:
    zendesk: dict[str, Any]
    routes: list[dict[str, str]]
    route_problems: list[str]
    default_channel: str | None
    agents_group: str | None
    agents_channel: str | None
    admins: list[str]
    admins_group: str | None
    managers: list[str]
    managers_group: str | None
    digest_channel: str | None
    retrain_cron: str
    digest_cron: str
    admin_notes: str  # settings.flywheel_admin_notes: which cycles every admin is told of
    next_retrain: datetime | None
    next_digest: datetime | None
    registry: Sequence[ModelEntry]
    cards: dict[str, int]
    undelivered: list[tuple[str, str]]  # (ticket ref, error)
    # the last digest sent: its week (ISO date) and (recipient, status, error) per recipient
    last_digest: tuple[str, list[tuple[str, str, str]]] | None = None
    pending_models: Sequence[PendingChange] = ()
    model_history: Sequence[ModelChange] = ()  # newest first
    installation: Installation | None = None  # what Slack told us about the app
    duel: DuelPanel | None = None  # the generators' online A/B test, when one runs
    judge: dict[str, Any] | None = None  # the last cycle's judge, per rule, with its history


@dataclass(frozen=True)
class HomeContent:
    user_id: str
    is_agent: bool
    stats: AgentStats
    admin: AdminPanel | None = None
    review: ReviewPanel | None = None  # the judge's review queue: admins and managers


def home_view(content: HomeContent) -> View:
    blocks: list[Any] = [HeaderBlock(text="AITL: drafts that learn from you")]
    blocks.extend(_agent_section(content))
    if content.review is not None:
        blocks.extend(review_blocks(content.review))
    if content.admin is not None:
        blocks.extend(_admin_sections(content.admin))
    blocks.append(
        ActionsBlock(
            block_id="aitl.home",
            elements=[ButtonElement(text="Refresh", action_id=actions.HOME_REFRESH, value="x")],
        )
    )
    return View(type="home", blocks=blocks[:100])


def _agent_section(content: HomeContent) -> list[Any]:
    s = content.stats
    if not content.is_agent:
        text = (
            "You are not in the agents group, so draft buttons will not record your clicks. "
            "Ask an admin to add you."
        )
        return [SectionBlock(text=MarkdownTextObject(text=text))]
    rate = s.adoption_rate
    lines = [
        "*Your last 30 days*",
        f"• Tickets you annotated: *{s.draft_sets}*",
        f"• Preferences: {s.events.get('preference', 0)} · adoption answers: "
        f"{s.events.get('adoption', 0)} · relevance checks: {s.events.get('relevance', 0)} · "
        f"missing knowledge: {s.events.get('missing_knowledge', 0)}",
        f"• Your adoption rate: *{rate:.0%}*"
        if rate is not None
        else "• Adoption rate: no answers yet",
    ]
    if s.last_click:
        lines.append(f"• Last click: {s.last_click:%Y-%m-%d %H:%M} UTC")
    return [SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))]


def _admin_sections(panel: AdminPanel) -> list[Any]:
    blocks: list[Any] = [DividerBlock(), HeaderBlock(text="Admin")]
    blocks.append(_text("*Zendesk*\n" + _zendesk_lines(panel)))
    shown = panel.cards.get("ticket.shown", 0)
    failed = panel.cards.get("ticket.failed", 0)
    slack = f"*Slack threads:* {shown} posted" + (f", *{failed} refused*" if failed else "")
    for ref, error in panel.undelivered:
        slack += f"\n• {escape(ref)}: {escape(error)}"
    slack += _installation_lines(panel.installation)
    blocks.append(_text(slack))
    blocks.append(_text("*Routing*\n" + _routing_lines(panel)))
    blocks.append(_edit_button(actions.ADMIN_ROUTING, "Edit routing"))
    blocks.append(_text("*People*\n" + _people_lines(panel)))
    blocks.append(_edit_button(actions.ADMIN_PEOPLE, "Edit agents and managers"))
    blocks.append(_text("*Schedule* (UTC)\n" + _schedule_lines(panel)))
    blocks.append(_edit_button(actions.ADMIN_SCHEDULE, "Edit schedule"))
    blocks.extend(_registry_blocks(panel.registry, panel.pending_models, panel.model_history))
    if panel.duel is not None:
        blocks.append(_text(duel_lines(panel.duel)))
    if panel.judge is not None:
        lines = [f"• {escape(line)}" for line in judge_lines(panel.judge)]
        blocks.append(_text("*The judge* (what it left out of training)\n" + "\n".join(lines)))
    return blocks


def _installation_lines(found: Installation | None) -> str:
    """Rate limits Slack put on our events, and the app's last uninstall or revocation."""
    if found is None:
        return ""
    lines = []
    if found.rate_limited:
        last = f"{found.last_rate_limited:%a %H:%M} UTC" if found.last_rate_limited else "?"
        lines.append(
            f"⚠️ Slack rate-limited the app's events {found.rate_limited} "
            f"{'time' if found.rate_limited == 1 else 'times'} in 7 days (last {last}): "
            "events in those minutes were dropped"
        )
    if not found.active:
        lines.append(
            f"⚠️ The app is marked *{found.changed}*: nothing is posted (`aitl slack status`)"
        )
    elif found.changed == "reinstalled" and found.changed_at:
        lines.append(f"• Reinstalled {found.changed_at:%Y-%m-%d %H:%M} UTC after an uninstall")
    return "".join(f"\n{line}" for line in lines)


def _text(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:3000]))


def _edit_button(action_id: str, text: str) -> ActionsBlock:
    return ActionsBlock(elements=[ButtonElement(text=text, action_id=action_id, value="edit")])


def _zendesk_lines(panel: AdminPanel) -> str:
    if not panel.zendesk:
        return "Not connected: run `aitl zendesk connect`."
    return "\n".join(f"• {escape(str(k))}: {escape(str(v))}" for k, v in panel.zendesk.items())


def _routing_lines(panel: AdminPanel) -> str:
    lines = [f"• {escape(format_route(rule))}" for rule in panel.routes] or ["• no rules"]
    default = f"<#{panel.default_channel}>" if panel.default_channel else "none (not posted)"
    lines.append(f"• everything else: {default}")
    lines.extend(f"⚠️ {escape(p)}" for p in panel.route_problems)
    return "\n".join(lines)


def _people_lines(panel: AdminPanel) -> str:
    agents = [f"<!subteam^{panel.agents_group}>" if panel.agents_group else None]
    agents.append(f"members of <#{panel.agents_channel}>" if panel.agents_channel else None)
    who = " and ".join(a for a in agents if a) or "⚠️ anyone in the workspace (no group set)"
    admins = ", ".join(f"<@{u}>" for u in panel.admins) or "none by id"
    if panel.admins_group:
        admins += f", <!subteam^{panel.admins_group}>"
    managers = ", ".join(f"<@{u}>" for u in panel.managers) or "none"
    if panel.managers_group:
        managers += f", <!subteam^{panel.managers_group}>"
    digest = f"<#{panel.digest_channel}>" if panel.digest_channel else "DMs only"
    return (
        f"• Agents who may annotate: {who}\n• Admins (from settings): {admins}\n"
        f"• Managers: {managers}\n• Digest channel: {digest}"
    )


def _schedule_lines(panel: AdminPanel) -> str:
    def when(moment: datetime | None) -> str:
        return f"next {moment:%a %Y-%m-%d %H:%M}" if moment else "not scheduled"

    return (
        f"• Retrain: `{panel.retrain_cron}` ({when(panel.next_retrain)})\n"
        f"• Digest: `{panel.digest_cron}` ({when(panel.next_digest)})"
        + _last_digest_lines(panel)
        + "\n• Every admin hears, by DM, of: "
        + ADMIN_NOTE_CHOICES.get(panel.admin_notes, panel.admin_notes)
    )


def _last_digest_lines(panel: AdminPanel) -> str:
    """Who got the last digest, and why anyone did not (a manager who left, a channel the bot
    is not in): the admin can fix it before the next one."""
    if panel.last_digest is None:
        return "\n• Last digest: none sent yet"
    week, deliveries = panel.last_digest
    sent = sum(status == "sent" for _, status, _ in deliveries)
    lines = [f"\n• Last digest (week of {week}): sent to {sent} of {len(deliveries)}"]
    for recipient, status, error in deliveries:
        if status != "sent":
            who = f"<#{recipient}>" if recipient.startswith("C") else f"<@{recipient}>"
            lines.append(f"    ◦ {who}: {escape(status)}" + (f", {escape(error)}" if error else ""))
    return "\n".join(lines)


def _registry_blocks(
    registry: Sequence[ModelEntry],
    pending: Sequence[PendingChange],
    history: Sequence[ModelChange],
) -> list[Any]:
    heading = "*Models*"
    if not registry:
        heading += "\nThe shipped models are live; no retrain has produced a challenger yet."
    blocks: list[Any] = [_text(heading)]
    if pending:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_pending_lines(pending))]))
    busy = {p.kind for p in pending}  # no second change of a kind while one is on its way
    for entry in registry[:20]:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(entry.metrics.items())[:6])
        line = f"*{escape(entry.kind)}* `{escape(entry.version)}` — {entry.status}"
        blocks.append(_text(line + (f"\n{escape(metrics)}" if metrics else "")))
        buttons = []
        value = f"{entry.kind}:{entry.version}"[:2000]
        if entry.status == "challenger" and entry.kind not in busy:
            buttons.append(
                ButtonElement(
                    text="Promote", action_id=PROMOTE, value=value, confirm=_promote_confirm(entry)
                )
            )
        if entry.status == "champion" and entry.kind not in busy:
            buttons.append(
                ButtonElement(
                    text="Roll back",
                    action_id=ROLL_BACK,
                    value=value,
                    style="danger",
                    confirm=_rollback_confirm(entry),
                )
            )
        if buttons:
            blocks.append(ActionsBlock(elements=buttons))
    if not any(p.change == "retrain" for p in pending):
        retrain = ButtonElement(
            text="Retrain now", action_id=RETRAIN, value="now", confirm=_retrain_confirm()
        )
        blocks.append(ActionsBlock(elements=[retrain]))
    if history:
        blocks.append(_text("*Recent model changes* (UTC)\n" + _history_lines(history[:5])))
    return blocks


def duel_lines(duel: DuelPanel) -> str:
    """The live A/B duel in a few lines: who, how many duels, the win rate with its interval,
    and the test's state."""
    head = (
        f"*Live A/B test* — challenger `{escape(duel.challenger)}` vs champion"
        f" `{escape(duel.champion)}`"
    )
    if duel.win_rate is None:
        rate = "no duels answered yet"
    else:
        rate = f"challenger preferred in {duel.win_rate:.0%} of {duel.duels} duels"
        if duel.low is not None and duel.high is not None:
            rate += f" (interval {duel.low:.0%}–{duel.high:.0%})"
    if duel.adoption_rate is not None:
        rate += f"; its draft used in {duel.adoption_rate:.0%} of {duel.adoptions} adoptions"
    state = escape(duel.state)
    if duel.decided:
        state = f"decided: {escape(duel.decided)}. {state}"
    return f"{head}\n{rate}\n_{state}_"


def _retrain_confirm() -> ConfirmObject:
    text = (
        "Trains on every click so far, outside the weekly schedule (minutes). Only models that"
        " beat the live ones on held-out tickets are promoted; admins get the result by DM."
    )
    return ConfirmObject(title="Retrain now?", text=text, confirm="Retrain", deny="Cancel")


def _pending_lines(pending: Sequence[PendingChange]) -> str:
    lines = []
    for p in pending:
        state = "in progress" if p.running else "queued"
        if p.failed_tries:
            state += f" (retrying: {p.failed_tries} failed {_tries(p.failed_tries)} so far)"
        asked = f", asked by <@{p.by}>" if p.by else ""
        if p.change == "retrain":
            what = "Retrain" if p.by else "Weekly retrain"
            lines.append(f":hourglass: {what} {state}{asked}")
            continue
        what = "Promotion of" if p.change == "promote" else "Rollback of"
        version = f" `{escape(p.version)}`" if p.version else ""
        lines.append(f":hourglass: {what} the {escape(p.kind)}{version} {state}{asked}")
    return "\n".join(lines)


def _tries(n: int) -> str:
    return "try" if n == 1 else "tries"


def _history_lines(history: Sequence[ModelChange]) -> str:
    lines = []
    for h in history:
        what = h.words(lambda version: f"`{escape(version)}`")
        why = f" — {escape_keeping_mentions(h.reason)}" if h.reason else ""
        lines.append(f"• {h.at:%b %d %H:%M} *{escape(h.kind)}* `{escape(h.version)}` {what}{why}")
    return "\n".join(lines)


def _promote_confirm(entry: ModelEntry) -> ConfirmObject:
    """Every agent's next drafts change: say so before, and what a retriever costs first."""
    text = f"`{escape(entry.version)}` serves every agent's next drafts."
    if entry.kind == "retriever":
        text += " The knowledge base is embedded with it first (minutes), then switched at once."
    return ConfirmObject(
        title=f"Promote this {entry.kind}?", text=text, confirm="Promote", deny="Cancel"
    )


def _rollback_confirm(entry: ModelEntry) -> ConfirmObject:
    back = f"`{escape(entry.replaces)}`" if entry.replaces else "The shipped model"
    text = (
        f"{back} serves the next drafts again, as before `{escape(entry.version)}` was"
        " promoted. Rolling back again goes one promotion further back."
    )
    return ConfirmObject(
        title=f"Roll back the {entry.kind}?",
        text=text,
        confirm="Roll back",
        deny="Cancel",
        style="danger",
    )


# --- edit modals --------------------------------------------------------------------------


def people_modal(panel: AdminPanel) -> View:
    return View(
        type="modal",
        callback_id=actions.ADMIN_PEOPLE,
        title="Agents and managers",
        submit="Save",
        close="Cancel",
        blocks=[
            _input(actions.AGENTS_GROUP, "Agents user group id (S…)", panel.agents_group),
            _channel_input(
                actions.AGENTS_CHANNEL, "…or members of this channel", panel.agents_channel
            ),
            InputBlock(
                block_id=actions.MANAGERS,
                label="Managers (get the weekly digest)",
                optional=True,
                element=UserMultiSelectElement(
                    action_id=actions.MANAGERS, initial_users=panel.managers or None
                ),
            ),
            _input(
                actions.MANAGERS_GROUP, "…or a managers user group id (S…)", panel.managers_group
            ),
            _channel_input(actions.DIGEST_CHANNEL, "Also post the digest in", panel.digest_channel),
            ContextBlock(
                elements=[MarkdownTextObject(text="Admins come from the deployment's settings.")]
            ),
        ],
    )


def routing_modal(panel: AdminPanel) -> View:
    rules = "\n".join(format_route(rule) for rule in panel.routes)
    return View(
        type="modal",
        callback_id=actions.ADMIN_ROUTING,
        title="Routing",
        submit="Save",
        close="Cancel",
        blocks=[
            _channel_input(
                actions.DEFAULT_CHANNEL, "Default channel for ticket threads", panel.default_channel
            ),
            InputBlock(
                block_id=actions.ROUTES,
                label="Rules, first match wins",
                optional=True,
                hint="One per line: brand <id> <channel id>, group <id> <channel id>, "
                "tag <tag> <channel id>",
                element=PlainTextInputElement(
                    action_id=actions.ROUTES, multiline=True, initial_value=rules or None
                ),
            ),
        ],
    )


def schedule_modal(panel: AdminPanel) -> View:
    return View(
        type="modal",
        callback_id=actions.ADMIN_SCHEDULE,
        title="Schedule",
        submit="Save",
        close="Cancel",
        blocks=[
            _input(actions.RETRAIN_CRON, "Retrain (crontab, UTC)", panel.retrain_cron, False),
            _input(actions.DIGEST_CRON, "Digest (crontab, UTC)", panel.digest_cron, False),
            _admin_notes_input(panel.admin_notes),
        ],
    )


def _admin_notes_input(current: str) -> InputBlock:
    options = [Option(value=key, text=text) for key, text in ADMIN_NOTE_CHOICES.items()]
    return InputBlock(
        block_id=actions.ADMIN_NOTES,
        label="After a retrain, every admin hears by DM of",
        hint="The admin who asked for a retrain in App Home always hears how it ended.",
        element=StaticSelectElement(
            action_id=actions.ADMIN_NOTES,
            options=options,
            initial_option=next((o for o in options if o.value == current), None),
        ),
    )


def _channel_input(block_id: str, label: str, initial: str | None) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=True,
        element=ChannelSelectElement(action_id=block_id, initial_channel=initial),
    )


def _input(block_id: str, label: str, initial: str | None, optional: bool = True) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        element=PlainTextInputElement(action_id=block_id, initial_value=initial or None),
    )


def format_route(rule: dict[str, str]) -> str:
    for word, key in ROUTE_KEYS.items():
        if key in rule:
            return f"{word} {rule[key]} {rule.get('channel', '?')}"
    return " ".join(f"{k}={v}" for k, v in rule.items())


def parse_routes(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """Rules from the admin's lines, and a problem per line that is not a rule."""
    rules, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or words[0].lower() not in ROUTE_KEYS:
            problems.append(f"line {number}: write brand|group|tag, a value and a channel id")
            continue
        key = ROUTE_KEYS[words[0].lower()]
        channel = words[2].strip("<>#").split("|")[0]
        rules.append({key: words[1], "channel": channel})
    return rules, problems
