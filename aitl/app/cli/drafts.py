"""``aitl ask``: two cited drafts for any question, from the terminal."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aitl.app.wiring import live_pipeline
from rag.models import DraftSet, Ticket

console = Console()


def register(app: typer.Typer) -> None:
    app.command()(ask)


def ask(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The customer's message"),
    subject: str = typer.Option("", help="Ticket subject"),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON"),
) -> None:
    """Draft two replies to TEXT and show the articles each one cites."""
    ticket = Ticket(subject=subject or text[:80], body=text)
    # as the product drafts: the registry's champions, steered by the feedback memory
    result = live_pipeline(ctx.obj.settings, ctx.obj.db)().draft(ticket)
    if as_json:
        typer.echo(json.dumps(draft_set_json(result), indent=2))
    else:
        print_draft_set(result)


def print_draft_set(result: DraftSet) -> None:
    for draft in result.drafts:
        console.print(
            Panel(
                draft.text,
                title=f"Draft {draft.label} · {draft.producer['variant']}"
                f" · {draft.producer['backend']}",
                expand=False,
            )
        )
        table = Table("chunk", "article", "similarity", "rerank", title=f"cited by {draft.label}")
        for c in draft.citations:
            rerank = "" if c.rerank_score is None else f"{c.rerank_score:.3f}"
            table.add_row(str(c.chunk_id), c.title, f"{c.similarity:.3f}", rerank)
        console.print(table)
    console.print(f"timings (ms): {result.timings_ms}")


def draft_set_json(result: DraftSet) -> dict:
    def chunk(c):
        return {
            "chunk_id": c.chunk_id,
            "title": c.title,
            "external_id": c.external_id,
            "similarity": round(c.similarity, 4),
            "rerank_score": c.rerank_score,
        }

    return {
        "drafts": [
            {
                "label": d.label,
                "text": d.text,
                "producer": d.producer,
                "citations": [chunk(c) for c in d.citations],
            }
            for d in result.drafts
        ],
        "retrieved": [chunk(c) for c in result.retrieved],
        "timings_ms": result.timings_ms,
    }
