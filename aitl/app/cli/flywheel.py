"""``aitl flywheel``: run a retraining cycle now, list runs, export the judged datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from aitl.app.wiring import memory_builder
from flywheel import store
from flywheel.encoding import encoders_line
from flywheel.export import export_datasets
from flywheel.judge_watch import JudgeWatch, kind_name
from flywheel.reports import (
    decision_lines,
    decision_summary,
    evidence_line,
    judge_summary,
    memory_line,
)
from flywheel.services import FlywheelServices

app = typer.Typer(help="The retraining loop.", no_args_is_help=True)
console = Console()


def _services(ctx: typer.Context):

    return FlywheelServices(ctx.obj.settings, ctx.obj.db)


@app.command()
def run(ctx: typer.Context) -> None:
    """One cycle now: judge, build datasets, train, evaluate, gate, promote."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("starting", total=None)
        report = _services(ctx).run_cycle(
            "cli", progress=lambda step: progress.update(task, description=step)
        )
    print_report(report)
    if report.status == "failed":
        raise typer.Exit(1)


def print_report(report) -> None:
    colour = {"succeeded": "green", "not_enough_data": "yellow"}.get(report.status, "red")
    console.print(f"run {report.run_id}: [{colour}]{report.status}[/] in {report.seconds} s")
    if report.error:
        console.print(report.error)
    judge = report.counts.get("judge", {})
    for name, share in judge.items():
        console.print(
            f"judge filtered {share['filtered']} of {share['events']} {name} events"
            f" ({share['share']:.0%})"
        )
    evidence = report.counts.get("gate_evidence")
    if evidence:
        console.print(f"the gate's evidence: {evidence_line(evidence)}")
    if memory_line(report.counts):
        console.print(memory_line(report.counts))
    if encoders_line(report.counts):
        console.print(encoders_line(report.counts))
    for warning in report.warnings:
        console.print(f"[yellow]{warning}[/]")
    table = Table("model", "metric", "champion", "challenger")
    for kind, metrics in report.metrics.items():
        if isinstance(metrics, dict) and "champion" in metrics:
            for name, before in metrics["champion"].items():
                table.add_row(kind, name, f"{before:.4f}", f"{metrics['challenger'][name]:.4f}")
    if table.rows:
        console.print(table)

    for line in decision_lines(report.decisions):
        console.print(line)


@app.command()
def runs(ctx: typer.Context, limit: int = typer.Option(10, min=1)) -> None:
    """The latest cycles with their status and decisions."""

    with ctx.obj.db.connection() as conn:
        found = store.runs(conn, limit)
    table = Table("run", "status", "trigger", "started", "seconds", "decisions / error; judge")
    for r in found:
        summary = r.error or decision_summary(r.decisions)
        judged = judge_summary(r.counts)
        if judged:
            summary += f"\njudge dropped {judged}"
        if memory_line(r.counts):
            summary += f"\n{memory_line(r.counts)}"
        if encoders_line(r.counts):
            summary += f"\n{encoders_line(r.counts)}"
        seconds = r.artefacts.get("seconds", "")
        table.add_row(
            str(r.id), r.status, r.trigger, f"{r.started_at:%Y-%m-%d %H:%M}", str(seconds), summary
        )
    console.print(table)


@app.command()
def judge(ctx: typer.Context, limit: int = typer.Option(6, min=1, help="Cycles to show")) -> None:
    """What each judge rule dropped, per kind of click, over the last cycles (oldest first),
    and the held-out tickets the gate decided on before and after judging."""
    with ctx.obj.db.connection() as conn:
        found = [r for r in reversed(store.runs(conn, limit)) if "judge_rules" in r.counts]
    if not found:
        console.print("No cycle has judged any clicks yet.")
        return
    watches = [JudgeWatch.from_counts(r.counts) for r in found]
    table = Table("rule", "clicks", *(f"run {r.id}\n{r.started_at:%Y-%m-%d}" for r in found))
    for rule, kind in sorted({(s.rule, s.kind) for w in watches if w for s in w.shares()}):
        table.add_row(rule, kind_name(kind), *(_share_cell(w, rule, kind) for w in watches))
    table.add_row(
        "gate evidence",
        "held-out tickets (marks), before → after judging",
        *(evidence_line(r.counts.get("gate_evidence") or {}) for r in found),
    )
    console.print(table)


def _share_cell(watch: JudgeWatch | None, rule: str, kind: str) -> str:
    if watch is None or not watch.kinds.get(kind):
        return "—"
    share = next((s for s in watch.shares() if (s.rule, s.kind) == (rule, kind)), None)
    text = f"{share.share:.0%} of {share.events:,}" if share else "0%"
    if any((u.rule, u.kind) == (rule, kind) for u in watch.unusual):
        text = f"[yellow]{text} ⚠[/]"
    if rule in watch.skipped:
        text += " (skipped)"
    return text


@app.command()
def export(
    ctx: typer.Context, out: Path = typer.Option(..., help="Folder for the JSONL files")
) -> None:
    """The judged datasets as JSONL for sentence-transformers and TRL, to train elsewhere."""

    counts = export_datasets(ctx.obj.settings, ctx.obj.db, out)
    console.print(json.dumps(counts, indent=2))


@app.command()
def memory(
    ctx: typer.Context,
    refresh: bool = typer.Option(False, "--refresh", help="Catch up with the clicks now."),
) -> None:
    """The feedback memory: clicks remembered, by whom, and its last refresh."""
    if refresh:
        done = memory_builder(ctx.obj.settings, ctx.obj.db).refresh()
        console.print(
            f"refreshed in {done.seconds} s: {done.entries:,} entries (+{done.added:,},"
            f" -{done.removed:,}; the judge left out {done.dropped:,})"
        )
    with ctx.obj.db.connection() as conn:
        size = store.memory_size(conn)
        last = store.last_memory_refresh(conn)
        replies, replied = store.reply_count(conn)
    settings = ctx.obj.settings
    state = "on" if settings.memory_enabled else "off (AITL_MEMORY_ENABLED)"
    console.print(
        f"memory {state}: {size.entries:,} clicks from {size.tickets:,} tickets on"
        f" {size.chunks:,} passages"
        + "".join(f", {n:,} {kind.replace('_', ' ')}" for kind, n in sorted(size.kinds.items()))
    )
    reuse = (
        "offered"
        if settings.memory_replies_enabled
        else "not offered (AITL_MEMORY_REPLIES_ENABLED)"
    )
    console.print(
        f"replies worth reusing: {replies:,} from {replied:,} tickets, {reuse} at cosine"
        f" ≥ {settings.memory_reply_floor}"
    )
    if last is None:
        console.print("never refreshed: `aitl flywheel memory --refresh`")
    else:
        console.print(
            f"last refresh {last.refreshed_at:%Y-%m-%d %H:%M:%S} under {last.version or '—'}"
            f" (+{last.added:,}, -{last.removed:,}; the judge left out {last.dropped:,})"
        )
    table = Table("agent", "clicks remembered")
    for agent, n in size.agents.items():
        table.add_row(agent, f"{n:,}")
    if table.rows:
        console.print(table)


@app.command()
def duels(
    ctx: typer.Context, limit: int = typer.Option(10, min=1, help="Decisions to show")
) -> None:
    """The online A/B tests running against the champion generator (its challenger, the
    replies from similar tickets) and the latest decisions they made."""
    online = _services(ctx).online
    for duel in (online.state(), online.reuse_state()):
        if duel is not None:
            state = f"decided, {duel.decided}" if duel.decided else duel.reason
            console.print(f"{duel.challenger} against {duel.champion}: {state}")
    with ctx.obj.db.connection() as conn:
        decided = store.duel_decisions(conn)[:limit]
    if not decided:
        console.print("no online decision yet")
    for d in decided:
        console.print(
            f"{d.decided_at:%Y-%m-%d %H:%M} {d.challenger} {d.action} against {d.champion}"
            f" after {d.duels} duels: {d.reason}"
        )
