"""``aitl zendesk``: connect an account, see its health, sync the knowledge base, poll."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from aitl.app.cli import kb as kb_cli
from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from connectors import setup
from connectors.helpcenter import HelpCenterNotes

app = typer.Typer(help="Zendesk connector.", no_args_is_help=True)
console = Console()


def services(ctx: typer.Context):

    db = ctx.obj.db
    return build_services(ctx.obj.settings, db, build_deferrer(db.url)).zendesk


@app.command()
def connect(
    ctx: typer.Context,
    email: str = typer.Option(..., help="Agent or admin email for the API"),
    token: str = typer.Option(..., prompt=True, hide_input=True, help="Zendesk API token"),
    public_url: str = typer.Option(None, help="Where Zendesk reaches AITL (AITL_PUBLIC_URL)"),
) -> None:
    """Check the credentials, store them encrypted, and create or update our webhook."""

    url = public_url or ctx.obj.settings.public_url
    if not url:
        raise typer.BadParameter(
            "give --public-url or set AITL_PUBLIC_URL", param_hint="--public-url"
        )
    done = setup.connect(services(ctx), email=email, api_token=token, public_url=url)
    verb = "created" if done.created else "updated"
    console.print(
        f"connected as {done.agent} ({done.role}); webhook {done.webhook_id} {verb} "
        f"→ {done.webhook_endpoint}; signing secret stored encrypted"
    )


@app.command()
def status(ctx: typer.Context) -> None:
    """Connection health, cursor lag, counts and the last errors."""

    report = setup.status(services(ctx))
    last = report.get("tickets.last_success")
    if isinstance(last, datetime):
        report["tickets.cursor_lag_s"] = int((datetime.now(UTC) - last).total_seconds())
    table = Table("item", "value")
    for key, value in report.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


@app.command(name="sync-kb")
def sync_kb(ctx: typer.Context) -> None:
    """Sync Help Center articles (and macros, solved tickets if enabled) into the KB."""
    reports = services(ctx).sync_kb()
    for source, report in reports.items():
        console.print(f"[bold]{source}[/]")
        kb_cli.print_report(report)
    _print_help_center_notes(reports.help_center)


SHOWN_UNRESOLVED = 10


def _print_help_center_notes(notes: HelpCenterNotes) -> None:
    """Which Help Centers were read, how many articles are for agents only, and why."""
    if notes.brands:
        console.print(f"Help Centers read: {', '.join(notes.brands)}")
    console.print(
        f"{notes.internal} internal article{'' if notes.internal == 1 else 's'} (agents only:"
        " cited to agents, never quoted to customers)"
    )
    for warning in notes.warnings:
        console.print(f"[yellow]warning[/] {warning}")
    for line in notes.unresolved[:SHOWN_UNRESOLVED]:
        console.print(f"[yellow]internal[/] {line}")
    if len(notes.unresolved) > SHOWN_UNRESOLVED:
        more = len(notes.unresolved) - SHOWN_UNRESOLVED
        console.print(f"[yellow]internal[/] … and {more} more articles for the same reasons")
    for line in notes.unreadable_brands:
        console.print(f"[red]not synced[/] {line}")


@app.command()
def poll(ctx: typer.Context, max_pages: int = typer.Option(None, min=1)) -> None:
    """Run the incremental export now (catch-up of anything webhooks missed)."""
    report = services(ctx).poller.poll(max_pages=max_pages)
    if report.skipped_busy:
        console.print("another poll is running; nothing done")
        return
    console.print(
        f"{report.pages} pages, {report.tickets_seen} tickets seen, "
        f"{report.tickets_synced} synced, {report.drafts_requested} drafts requested"
    )
