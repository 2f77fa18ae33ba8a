"""``aitl models``: the registry, and promotion or rollback by hand (App Home does the same)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from flywheel.services import FlywheelServices

app = typer.Typer(help="The model registry.", no_args_is_help=True)
console = Console()


def _registry(ctx: typer.Context):

    def waiting(what: str) -> None:
        console.print(f"{what}: waiting for another model change to finish…")

    return FlywheelServices(ctx.obj.settings, ctx.obj.db, waiting=waiting).registry


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Every trained model with its status, metrics, the gate's decision and, for a champion,
    what a rollback would bring back."""
    registry = _registry(ctx)
    rows = registry.list()
    back_to = registry.rollback_targets()
    table = Table("kind", "version", "status", "metrics", "decision", "rollback brings back")
    for r in rows:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in r.metrics.items() if isinstance(v, float))
        back = (back_to.get(r.kind) or "the shipped model") if r.status == "champion" else ""
        table.add_row(r.kind, r.version, r.status, metrics, r.decision or "", back)
    console.print(table if rows else "No trained models yet: the shipped ones are live.")


@app.command()
def history(
    ctx: typer.Context,
    kind: str | None = typer.Argument(None, help="retriever, reranker or generator; all if none"),
    limit: int = typer.Option(20, min=1, help="How many changes, newest first."),
) -> None:
    """Every promotion and rollback, newest first: what changed, what it replaced or brought
    back, why and when, so "what was live on Tuesday" has an answer."""
    changes = _registry(ctx).history(kind, limit=limit)
    table = Table("when (UTC)", "kind", "version", "change", "replaced / live again", "why")
    for c in changes:
        other = c.other or "the shipped model"
        table.add_row(f"{c.at:%Y-%m-%d %H:%M}", c.kind, c.version, c.change, other, c.reason or "")
    console.print(table if changes else "No model promoted yet: the shipped ones are live.")


@app.command()
def promote(ctx: typer.Context, kind: str, version: str) -> None:
    """Make a trained model live (a retriever's index is built first when missing)."""
    row = _registry(ctx).promote(kind, version, "promoted from the CLI")
    console.print(f"{row.kind} {row.version} is live")


@app.command()
def rollback(
    ctx: typer.Context,
    kind: str,
    expect: str | None = typer.Option(
        None,
        "--expect",
        metavar="VERSION",
        help="Roll back only if VERSION is still live (as App Home's button does): a script "
        "run twice, or a promotion that landed meanwhile, is not undone by mistake.",
    ),
) -> None:
    """Undo the latest promotion: the model it replaced goes live again (or the shipped one).

    Again goes one promotion further back.
    """
    previous = _registry(ctx).rollback(kind, "rolled back from the CLI", live=expect)
    console.print(f"{kind}: {previous.version if previous else 'the shipped model'} is live")
