"""``aitl flywheel``: run a retraining cycle now, list runs, export the judged datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from flywheel import store
from flywheel.export import export_datasets
from flywheel.reports import decision_lines, decision_summary
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
    table = Table("run", "status", "trigger", "started", "seconds", "decisions / error")
    for r in found:
        summary = r.error or decision_summary(r.decisions)
        seconds = r.artefacts.get("seconds", "")
        table.add_row(
            str(r.id), r.status, r.trigger, f"{r.started_at:%Y-%m-%d %H:%M}", str(seconds), summary
        )
    console.print(table)


@app.command()
def export(
    ctx: typer.Context, out: Path = typer.Option(..., help="Folder for the JSONL files")
) -> None:
    """The judged datasets as JSONL for sentence-transformers and TRL, to train elsewhere."""

    counts = export_datasets(ctx.obj.settings, ctx.obj.db, out)
    console.print(json.dumps(counts, indent=2))
