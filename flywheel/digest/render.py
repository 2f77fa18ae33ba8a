"""The digest as a PNG chart (matplotlib, headless) and as Markdown, for Slack and for
``aitl digest preview``."""

from __future__ import annotations

import io
import textwrap

from flywheel.digest.report import (
    Digest,
    duel_decision_line,
    duel_line,
    judge_agreement_line,
    judge_lines,
    model_change_line,
)

CHART_SIZE = (1200, 560)  # pixels: wide enough for Slack's preview, legible on a phone
DPI = 100
SERIES_LABELS = {
    "adoption_rate": "drafts used (clicks)",
    "win_rate": "challenger win rate",
    "relevance_precision": "cited articles relevant",
}
COLOURS = {"adoption_rate": "#2f6fde", "win_rate": "#e07b00", "relevance_precision": "#2a9d5b"}


def render_chart(digest: Digest) -> bytes:
    """Weekly trends on the left, the largest knowledge gaps on the right; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure as Canvas

    width, height = CHART_SIZE
    canvas = Canvas(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    trends, gaps = canvas.subplots(1, 2, width_ratios=(1.25, 1))
    canvas.suptitle(f"AITL weekly digest · {digest.label}", fontsize=15, fontweight="bold")
    _trends(trends, digest)
    _gaps(gaps, digest)
    out = io.BytesIO()
    canvas.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _trends(axes, digest: Digest) -> None:
    weeks = [_short_week(label) for label in digest.weeks]
    positions = list(range(len(weeks)))
    drawn = False
    for key, label in SERIES_LABELS.items():
        values = digest.series.get(key, [])
        points = [(x, v * 100) for x, v in zip(positions, values, strict=False) if v is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", linewidth=2.2, color=COLOURS[key], label=label)
        drawn = True
    axes.set_xticks(positions, weeks, fontsize=9)
    axes.set_ylim(0, 105)
    axes.set_ylabel("% of answers")
    axes.set_title("Weekly trends (this week on the right)", fontsize=12)
    axes.grid(axis="y", alpha=0.3)
    if drawn:
        axes.legend(loc="lower left", fontsize=9, frameon=False)
    else:
        _say(axes, "No clicks in these weeks yet")


def _gaps(axes, digest: Digest) -> None:
    axes.set_title("Knowledge gaps by tickets this week", fontsize=12)
    gaps = digest.gaps[:6]
    if not gaps:
        _say(axes, "No missing knowledge reported")
        axes.set_axis_off()
        return
    # numbered positions: two gaps may shorten to the same label, and a categorical axis
    # would draw them as one bar
    shown = list(reversed(list(enumerate(gaps, 1))))
    labels = [f"{rank}. {textwrap.shorten(g.title, 36, placeholder='…')}" for rank, g in shown]
    counts = [g.tickets for _, g in shown]
    positions = list(range(len(shown)))
    bars = axes.barh(positions, counts, color="#8a5cd1")
    axes.set_yticks(positions, labels)
    axes.bar_label(bars, padding=3, fontsize=9)
    axes.set_xlabel("tickets")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.tick_params(axis="y", labelsize=9)
    axes.set_xlim(0, max(counts) * 1.2)
    axes.spines[["top", "right"]].set_visible(False)


def _say(axes, text: str) -> None:
    """A grey note in the middle of an empty panel, so it reads as 'nothing yet', not broken."""
    axes.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        transform=axes.transAxes,
        fontsize=12,
        color="#666666",
    )


def _short_week(label: str) -> str:
    """'16–22 Nov 2026' → '16–22 Nov': the year only crowds the axis."""
    parts = label.rsplit(" ", 1)
    return parts[0] if len(parts) == 2 and parts[1].isdigit() else label


def render_markdown(digest: Digest, *, chart_name: str | None = "digest.png") -> str:
    """The whole report, as a manager would read it in the full-report modal."""
    lines = [f"# AITL weekly digest · {digest.label}", ""]
    if chart_name:
        lines += [f"![weekly trends and knowledge gaps]({chart_name})", ""]
    if digest.empty:
        lines += ["_No tickets were drafted and no drafts were rated this week._", ""]
    lines += ["## Headlines", "", "| figure | this week | vs the previous 4 weeks |"]
    lines += ["| --- | ---: | --- |"]
    for figure in digest.figures:
        mark = {"better": " ✅", "worse": " ⚠️"}.get(figure.verdict, "")
        lines.append(f"| {figure.label} | {figure.shown()} | {figure.change()}{mark} |")
    lines += ["", "## Answers this week", ""]
    unexplained = digest.adoption_without_reason
    lines.append(
        "- Adoption (clicks): "
        + _counts(digest.adoption)
        + (f"; {unexplained:,} without a reason (form closed)" if unexplained else "")
    )
    lines.append("- Adoption (replies sent in Zendesk): " + _counts(digest.sent_adoption))
    lines.append("- Preference: " + _counts(digest.preference))
    coverage = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in digest.coverage.items())
    lines.append(f"- Coverage of the {digest.draft_sets:,} draft sets: {coverage or 'n/a'}")
    lines += ["", "## Last retrain", ""]
    lines += _retrain_lines(digest)
    if digest.judge is not None:
        lines += ["", "## The judge", ""]
        lines += [f"- {line}" for line in judge_lines(digest.judge)]
    if digest.judge_agreement is not None:  # digests stored before reviews: none
        lines += ["", "## The judge, reviewed", ""]
        lines.append(f"- {judge_agreement_line(digest.judge_agreement)}")
    lines += ["", "## Model changes this week", ""]
    lines += [f"- {model_change_line(c)}" for c in digest.model_changes] or [
        "No model was promoted or rolled back."
    ]
    lines += ["", "## Online A/B test of the drafts", ""]
    lines += [f"- {duel_decision_line(d)}" for d in digest.duel_decisions]
    lines.append(
        f"- Running: {duel_line(digest.duel)}"
        if digest.duel
        else "- No challenger drafts beside the champion."
    )
    lines += ["", "## Agents", ""]
    lines += _agent_lines(digest)
    lines += ["", "## Knowledge gaps", ""]
    lines += _gap_lines(digest)
    return "\n".join(lines).rstrip() + "\n"


def _counts(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "none"
    return ", ".join(f"{k.replace('_', ' ')} {v:,} ({v / total:.0%})" for k, v in counts.items())


def _retrain_lines(digest: Digest) -> list[str]:
    run = digest.retrain
    if run is None:
        return ["No retraining has run yet."]
    head = f"Run {run['run_id']} ({run['trigger']}): {run['status']}"
    if run.get("finished_at"):
        head += f", finished {run['finished_at']}"
    lines = [head + "."]
    lines += [f"- {line}" for line in run["lines"]]
    if run.get("error"):
        lines.append(f"- error: {run['error']}")
    return lines


def _agent_lines(digest: Digest) -> list[str]:
    if not digest.agents:
        return ["No agent clicked this week."]
    lines = [
        "| agent | clicks | tickets | 4-week avg | forms closed unsent | watch |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for agent in digest.agents:
        flags = "; ".join(agent["flags"]) or "—"
        lines.append(
            f"| {agent['agent_id']} | {agent['clicks']:,} | {agent['tickets']:,} |"
            f" {agent['previous_clicks']:,.1f} | {agent.get('closed_unsent', 0):,} | {flags} |"
        )
    return lines


def _gap_lines(digest: Digest) -> list[str]:
    if not digest.gaps:
        return ["No missing knowledge or 'both bad' drafts this week."]
    lines = []
    for rank, gap in enumerate(digest.gaps, 1):
        lines.append(f"### {rank}. {gap.title} ({gap.tickets} tickets)")
        lines += [f"- asked: “{example}”" for example in gap.examples]
        for label, url in gap.articles:
            lines.append(
                f"- agents pointed to: [{label}]({url})" if url else f"- agents pointed to: {label}"
            )
        lines.append("")
    return lines
