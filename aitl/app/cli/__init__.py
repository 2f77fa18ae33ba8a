"""The ``aitl`` command line (Typer)."""

from __future__ import annotations

import logging
import os
import signal

import typer
from rich.console import Console

from aitl.app.cli import db as db_cli
from aitl.app.cli import digest as digest_cli
from aitl.app.cli import drafts, kb, processes, zendesk
from aitl.app.cli import flywheel as flywheel_cli
from aitl.app.cli import models as models_cli
from aitl.app.cli import secrets as secrets_cli
from aitl.app.cli import slack as slack_cli
from aitl.app.cli.context import Context
from aitl.core import logs
from aitl.core.exceptions import AitlError
from aitl.core.settings import Settings

console = Console(stderr=True)

app = typer.Typer(
    help="AITL: an agent-in-the-loop copilot for customer support.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cli.app, name="db")
app.add_typer(kb.app, name="kb")
app.add_typer(zendesk.app, name="zendesk")
app.add_typer(flywheel_cli.app, name="flywheel")
app.add_typer(models_cli.app, name="models")
app.add_typer(digest_cli.app, name="digest")
app.add_typer(secrets_cli.app, name="secrets")
app.add_typer(slack_cli.app, name="slack")
drafts.register(app)
processes.register(app)


@app.callback()
def _configure(ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Settings come from AITL_* variables and .env; see README."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings()
    logs.install(logs.settings_secrets(settings))
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    ctx.obj = Context(settings)
    ctx.call_on_close(ctx.obj.close)


def _quiet_model_loading() -> None:
    # the edge decides: nothing may download weights, and load bars would drown the output
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _stop_on_sigterm() -> None:
    """A process manager's SIGTERM stops a command as Ctrl-C does. Left to Python's default it
    kills outright: ``aitl demo`` then leaves its worker and scheduler running, orphaned, and
    the embedded PostgreSQL is never stopped (its handle closes in an ``atexit`` hook).
    ``aitl web`` and ``aitl worker`` put their own graceful handlers in place while they run."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def main() -> None:
    _quiet_model_loading()
    _stop_on_sigterm()
    try:
        app()
    except AitlError as exc:
        console.print(f"[bold red]error:[/] {logs.mask(str(exc))}")
        raise SystemExit(2) from None
