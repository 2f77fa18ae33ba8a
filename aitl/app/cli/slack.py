"""``aitl slack status``: whether the Slack app may post, what Slack said about it lately, and
whether its token works now (which brings an app marked uninstalled back)."""

from __future__ import annotations

import typer
from rich.console import Console

from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from bot import slack_api
from bot.exceptions import BotError

app = typer.Typer(help="The Slack app as Slack sees it.", no_args_is_help=True)
console = Console()


@app.command()
def status(ctx: typer.Context) -> None:
    """The installation, the last week's rate limits and auth.test; exit 1 if it cannot post."""
    settings, db = ctx.obj.settings, ctx.obj.db
    slack = build_services(settings, db, build_deferrer(db.url)).slack
    if slack is None:
        console.print("Slack is not configured: set AITL_SLACK_BOT_TOKEN and the signing secret.")
        raise typer.Exit(1)
    try:
        who = slack_api.call(slack.client.auth_test)
    except BotError as exc:
        console.print(f"[red]The bot token does not work:[/] {exc}")
        raise typer.Exit(1) from exc
    team = str(who.get("team_id") or "")
    slack.installation.back(team, "auth.test passed")
    found = slack.installation.status()
    console.print(f"workspace: {who.get('team')} ({team}), bot user {who.get('user_id')}")
    if found.changed:
        console.print(f"last change: {found.changed} at {found.changed_at:%Y-%m-%d %H:%M %Z}")
    limits = found.rate_limited
    last = f", last at {found.last_rate_limited:%Y-%m-%d %H:%M %Z}" if limits else ""
    console.print(f"events rate-limited by Slack in 7 days: {limits}{last}")
    console.print("posting: [green]on[/]" if found.active else "posting: [red]off[/]")
    if not found.active:
        raise typer.Exit(1)
