"""``aitl secrets``: where the encryption keys are, which key each stored secret uses, rotation."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from aitl.core import secrets

app = typer.Typer(help="Connector secrets, encrypted at rest.", no_args_is_help=True)
console = Console()


def _configured(ctx: typer.Context) -> str | None:
    key = ctx.obj.settings.secrets_key
    return key.get_secret_value() if key else None


@app.command()
def status(ctx: typer.Context) -> None:
    """The keys' source and each secret's key (never a value); exit 1 if one needs rotating."""
    settings, configured = ctx.obj.settings, _configured(ctx)
    store = secrets.secret_store(ctx.obj.db, configured, settings.data_dir)
    source = (
        "AITL_SECRETS_KEY" if configured else f"key file {secrets.key_file_of(settings.data_dir)}"
    )
    console.print(f"keys: {len(store.box.keys)} from {source} (the first encrypts)")
    found = store.status()
    table = Table("secret", "set at", "encrypted with")
    for row in found:
        table.add_row(row.name, f"{row.updated_at:%Y-%m-%d %H:%M %Z}", _key(row.key_index))
    console.print(table if found else "No stored secrets: connect Zendesk first.")
    stale = [row.name for row in found if row.key_index != 0]
    if stale:
        console.print(f"[yellow]{len(stale)} not on the newest key: run aitl secrets rotate")
        raise typer.Exit(1)


def _key(index: int | None) -> str:
    if index is None:
        return "[red]no configured key (was a key dropped too early?)"
    return "the newest key" if index == 0 else f"an older key (#{index + 1})"


@app.command()
def rotate(ctx: typer.Context) -> None:
    """Re-encrypt every stored secret with the newest key.

    With AITL_SECRETS_KEY, put the new key first (comma-separated, newest first), run this,
    then drop the older keys. With the key file, a new key is generated and the old removed.
    """
    settings = ctx.obj.settings
    done = secrets.rotate(ctx.obj.db, _configured(ctx), settings.data_dir)
    where = "a new key in the key file" if done.new_key else "the first key of AITL_SECRETS_KEY"
    console.print(f"{done.rotated} secrets re-encrypted with {where}")
    if done.older_keys:
        console.print(f"{done.older_keys} older keys can now be removed from AITL_SECRETS_KEY")
