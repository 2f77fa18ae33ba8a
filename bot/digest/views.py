"""Block Kit of the weekly digest: the summary message and the full-report modal.

Pure functions over ``slack_sdk.models``. Slack's limits are kept here, where the texts are
made: 50 blocks a message, 100 a modal, 3,000 characters a section, 10 fields of 2,000.
"""

from __future__ import annotations

import textwrap

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.card_views import escape, escape_keeping_mentions
from flywheel.digest.report import (
    Digest,
    Gap,
    duel_decision_line,
    duel_line,
    judge_agreement_line,
    judge_lines,
    model_change_line,
)

OPEN_REPORT = "aitl.digest.open"
DRAFT_ARTICLE = "aitl.digest.draft_article"
REPORT_VIEW = "aitl.digest.report"
MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_FIELD = 2000
MARKS = {"better": " :white_check_mark:", "worse": " :warning:"}


def digest_text(digest: Digest) -> str:
    """The notification text (and what screen readers and old clients show)."""
    adoption = digest.figure("adoption_rate")
    return (
        f"AITL weekly digest, {digest.label}: {digest.figure('drafted_tickets').shown()} tickets"
        f" drafted, drafts used {adoption.shown()}, {len(digest.gaps)} knowledge gaps."
    )


def digest_blocks(digest: Digest) -> list[Block]:
    """The summary a manager reads in the DM or channel."""
    blocks: list[Block] = [HeaderBlock(text=_cut(f"AITL weekly digest · {digest.label}", 150))]
    if digest.empty:
        blocks.append(
            _section(
                "No tickets were drafted and no drafts were rated this week. If that is a"
                " surprise, check App Home: Zendesk status and the agents group."
            )
        )
    blocks.append(
        SectionBlock(
            fields=[MarkdownTextObject(text=_cut(_figure(f), MAX_FIELD)) for f in digest.figures][
                :10
            ]
        )
    )
    context = _retrain_line(digest)
    if digest.model_changes:
        changes = "; ".join(
            escape(model_change_line(c, why=False)) for c in digest.model_changes[-3:]
        )
        more = len(digest.model_changes) - 3
        context += f"\nModel changes this week: {changes}" + (
            f"; and {more} more in the full report" if more > 0 else ""
        )
    if digest.duel:
        context += f"\nLive A/B test: {escape(duel_line(digest.duel))}"
    if digest.judge_agreement is not None:  # digests stored before reviews: none
        context += f"\n{escape(judge_agreement_line(digest.judge_agreement))}"
    if digest.judge and digest.judge.get("unusual"):  # a rule dropping an unusual share
        context += "\n:warning: The judge: " + escape("; ".join(digest.judge["unusual"]))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_cut(context, 2000))]))
    if digest.gaps:
        lines = [f"*Knowledge gaps* ({len(digest.gaps)})"]
        lines += [f"• {escape(g.title)} — {g.tickets} tickets" for g in digest.gaps[:3]]
        if len(digest.gaps) > 3:
            lines.append(f"…and {len(digest.gaps) - 3} more in the full report")
        blocks.append(_section("\n".join(lines)))
    flagged = digest.flagged_agents
    if flagged:
        lines = ["*Agents to check in with*"]
        lines += [f"• <@{a['agent_id']}>: {'; '.join(a['flags'])}" for a in flagged[:5]]
        blocks.append(_section("\n".join(lines)))
    blocks.append(
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Open full report",
                    action_id=OPEN_REPORT,
                    value=digest.week_start,
                    style="primary",
                )
            ]
        )
    )
    return blocks[:MAX_MESSAGE_BLOCKS]


def report_modal(digest: Digest, *, can_draft: bool, drafted: dict[str, str] | None = None) -> View:
    """The whole report; admins get a Draft article button on each gap."""
    drafted = drafted or {}
    blocks: list[Block] = [_section(f"*{digest.label}*  ·  built {digest.generated_at[:16]} UTC")]
    lines = [f"{_figure(f, inline=True)}" for f in digest.figures]
    blocks.append(
        _section("*Headlines* (vs the mean of the previous 4 weeks)\n" + "\n".join(lines))
    )
    blocks.append(_section(_answers(digest)))
    blocks.append(DividerBlock())
    blocks.append(_section("*Last retrain*\n" + _retrain_line(digest, full=True)))
    if digest.judge is not None:
        judged = "\n".join(f"• {escape(line)}" for line in judge_lines(digest.judge))
        blocks.append(_section(_cut("*The judge*\n" + judged, MAX_SECTION)))
    if digest.judge_agreement is not None:
        blocks.append(_section(escape(judge_agreement_line(digest.judge_agreement))))
    blocks.append(_section(_model_changes(digest)))
    blocks.append(_section(_cut(_duel(digest), 3000)))
    blocks.append(_section(_agents(digest)))
    blocks.append(DividerBlock())
    blocks.append(
        _section(
            f"*Knowledge gaps* ({len(digest.gaps)})"
            if digest.gaps
            else "*Knowledge gaps*\nNo missing knowledge or 'both bad' drafts this week."
        )
    )
    room = MAX_MODAL_BLOCKS - len(blocks)
    for gap in digest.gaps[: max(0, room // 2)]:
        blocks.extend(_gap_blocks(digest, gap, can_draft, drafted.get(gap.key)))
    return View(
        type="modal",
        callback_id=REPORT_VIEW,
        title=PlainTextObject(text="Weekly digest"),
        close=PlainTextObject(text="Close"),
        private_metadata=digest.week_start,
        blocks=blocks[:MAX_MODAL_BLOCKS],
    )


def _gap_blocks(digest: Digest, gap: Gap, can_draft: bool, drafted: str | None) -> list[Block]:
    lines = [f"*{escape(gap.title)}* — {gap.tickets} tickets"]
    lines += [f"> {escape(textwrap.shorten(e, 200, placeholder='…'))}" for e in gap.examples]
    for label, url in gap.articles[:5]:
        lines.append(
            f"• agents pointed to <{url}|{escape(label or url)}>"
            if url
            else f"• agents pointed to {escape(label or '')}"
        )
    section = _section("\n".join(lines))
    if drafted:
        return [section, ContextBlock(elements=[MarkdownTextObject(text=_cut(drafted, 2000))])]
    if can_draft:
        section.accessory = ButtonElement(
            text="Draft article in Help Center",
            action_id=DRAFT_ARTICLE,
            value=f"{digest.week_start}:{gap.key}",
        )
    return [section]


def _figure(figure, inline: bool = False) -> str:
    mark = MARKS.get(figure.verdict, "")
    if inline:
        return f"• {figure.label}: *{figure.shown()}* ({figure.change()}){mark}"
    return f"*{figure.label}*\n{figure.shown()}{mark}\n_{figure.change()}_"


def _retrain_line(digest: Digest, full: bool = False) -> str:
    """One line in the summary; the reasons (metrics before → after) in the full report."""
    run = digest.retrain
    if run is None:
        return "No retraining has run yet."
    head = f"Last retrain (run {run['run_id']}, {run['trigger']}): {run['status']}"
    if run.get("finished_at"):
        head += f", {run['finished_at'].replace('T', ' ')[:16]} UTC"
    lines = list(run["lines"]) if full else [line.split(" (")[0] for line in run["lines"]]
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    if not lines:
        return head
    return head + "\n• " + "\n• ".join(lines) if full else head + ": " + "; ".join(lines)


def _model_changes(digest: Digest) -> str:
    """Every promotion and rollback of the week with its reason, whoever made it."""
    if not digest.model_changes:
        return "*Model changes this week*\nNo model was promoted or rolled back."
    lines = [f"• {escape_keeping_mentions(model_change_line(c))}" for c in digest.model_changes]
    return "*Model changes this week*\n" + "\n".join(lines)


def _duel(digest: Digest) -> str:
    """The online A/B test: what it decided this week, and where it stands."""
    lines = [f"• {escape(duel_decision_line(d))}" for d in digest.duel_decisions]
    lines.append(
        f"• Running: {escape(duel_line(digest.duel))}"
        if digest.duel
        else "• No challenger drafts beside the champion."
    )
    return "*Online A/B test of the drafts*\n" + "\n".join(lines)


def _answers(digest: Digest) -> str:
    def counts(values: dict[str, int]) -> str:
        total = sum(values.values())
        if not total:
            return "none"
        return ", ".join(f"{k.replace('_', ' ')} {v} ({v / total:.0%})" for k, v in values.items())

    coverage = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in digest.coverage.items())
    return (
        "*Answers this week*\n"
        f"• adoption (clicks): {counts(digest.adoption)}{_unexplained(digest)}\n"
        f"• adoption (replies sent in Zendesk): {counts(digest.sent_adoption)}\n"
        f"• preference: {counts(digest.preference)}\n"
        f"• coverage of {digest.draft_sets} draft sets: {coverage or 'n/a'}"
    )


def _unexplained(digest: Digest) -> str:
    n = digest.adoption_without_reason
    return f"; {n} without a reason (form closed)" if n else ""


def _agents(digest: Digest) -> str:
    if not digest.agents:
        return "*Agents*\nNo agent clicked this week."
    lines = ["*Agents* (clicks this week · 4-week average · forms closed unsent · what to watch)"]
    for agent in digest.agents[:25]:
        flags = "; ".join(agent["flags"]) or "ok"
        average = f"{agent['previous_clicks']:.1f}"
        closed = agent.get("closed_unsent", 0)
        lines.append(
            f"• <@{agent['agent_id']}>: {agent['clicks']} · {average} · {closed} · {flags}"
        )
    if len(digest.agents) > 25:
        lines.append(f"…and {len(digest.agents) - 25} more (see `aitl digest preview`)")
    return "\n".join(lines)


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_cut(text, MAX_SECTION)))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
