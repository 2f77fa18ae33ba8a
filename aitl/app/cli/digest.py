"""``aitl digest``: preview the weekly manager digest locally, or send it now."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import typer
from rich.console import Console

from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from bot.digest import store as digest_store
from bot.exceptions import BotError
from connectors import store as zendesk_store
from flywheel.digest.content import Digest, digest_of
from flywheel.digest.metrics import last_full_week, week_of
from flywheel.digest.render import render_chart, render_markdown

app = typer.Typer(help="The weekly manager digest.", no_args_is_help=True)
console = Console()
WEEK_HELP = "Any day of the week to report (YYYY-MM-DD); default: the last full week."


def _window(week: str | None):

    if week is None:
        return last_full_week(datetime.now(UTC))
    try:
        return week_of(date.fromisoformat(week))
    except ValueError as exc:
        raise typer.BadParameter(f"{week!r} is not a date like 2026-11-16") from exc


@app.command()
def preview(
    ctx: typer.Context,
    out: Path = typer.Option(..., help="Folder for digest.png and digest.md."),
    week: str | None = typer.Option(None, help=WEEK_HELP),
) -> None:
    """Write the digest as PNG + Markdown, without Slack: what managers would get."""

    settings, db = ctx.obj.settings, ctx.obj.db
    window = _window(week)
    with db.connection() as conn:
        stored = digest_store.report(conn, window.start.date())
    with console.status(f"building the digest of {window.label}…"):
        # a week already sent shows exactly what managers got
        digest = (
            Digest.from_json(stored[0])
            if stored
            else digest_of(settings, db, window, sent_adoption=zendesk_store.sent_adoption)
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "digest.png").write_bytes(render_chart(digest))
        (out / "digest.md").write_text(render_markdown(digest), encoding="utf-8")
    note = " (as sent)" if stored else ""
    console.print(f"digest of {digest.label}{note}: {out / 'digest.md'}, {out / 'digest.png'}")
    if digest.empty:
        console.print("[yellow]nothing was drafted or rated that week[/]")


@app.command()
def send(ctx: typer.Context, week: str | None = typer.Option(None, help=WEEK_HELP)) -> None:
    """Send the digest now to the managers and the digest channel (once per week each)."""

    settings, db = ctx.obj.settings, ctx.obj.db
    if not settings.slack_configured:
        raise typer.BadParameter(
            "Slack is not configured: set AITL_SLACK_BOT_TOKEN and AITL_SLACK_SIGNING_SECRET"
            " (or use `aitl digest preview`)"
        )

    services = build_services(settings, db, build_deferrer(db.url))
    window = _window(week)
    try:
        report = services.slack.digest.send(window)
    except BotError as exc:
        console.print(f"[red]not every recipient got it:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"digest of {window.label}: sent to {len(report.sent)}")
    for recipient in report.already:
        console.print(f"  {recipient}: already had it")
    for recipient, reason in report.skipped.items():
        console.print(f"  [yellow]{recipient} skipped[/]: {reason}")
