"""``aitl db``: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from aitl.core import db, migrations

app = typer.Typer(help="Database schema.", no_args_is_help=True)
console = Console()


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (also done at every start-up)."""
    url = db.resolve_url(ctx.obj.settings)
    db.ensure_vector_extension(url)
    applied = migrations.upgrade(url)
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is current")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show where the database is and what is pending."""
    url = db.resolve_url(ctx.obj.settings)
    db.ensure_vector_extension(url)
    waiting = migrations.pending(url)
    console.print(f"database: {db.redact_url(url)}")
    console.print(f"pending: {', '.join(waiting)}" if waiting else "schema is current")
    raise typer.Exit(1 if waiting else 0)
