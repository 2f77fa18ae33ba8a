"""``aitl kb``: ingest, search and re-embed the knowledge base."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flywheel.serving import LivePipeline
from rag import encoders, exceptions, factory, loaders, store
from rag.ingest import IngestReport
from rag.rerank import CrossEncoderReranker

app = typer.Typer(help="Knowledge base.", no_args_is_help=True)
console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def ingest(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A folder (or file) of .md, .html, .txt or .jsonl"),
    source: str = typer.Option("files", help="Source label; re-ingesting it prunes vanished docs"),
    prune: bool = typer.Option(True, help="Soft-delete documents no longer in the folder"),
    force: bool = typer.Option(False, help="Re-chunk and re-embed even unchanged documents"),
) -> None:
    """Add, update and soft-delete documents so the store matches PATH."""
    settings = ctx.obj.settings
    files = loaders.discover(path)
    with _progress() as progress:
        task = progress.add_task(f"ingesting {path}", total=len(files))
        report = factory.ingestor(settings, ctx.obj.db).ingest_path(
            path,
            source=source,
            max_bytes=settings.max_document_bytes,
            prune=prune,
            force=force,
            on_file=lambda _: progress.advance(task),
        )
    print_report(report)
    if report.failures and not report.seen:
        raise typer.Exit(1)


def print_report(report: IngestReport) -> None:
    console.print(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
        f"deleted {report.deleted}; {report.chunks} chunks embedded"
        + (f"; {report.relabelled} relabelled (audience, brand)" if report.relabelled else "")
    )
    for failure in report.failures:
        console.print(f"[yellow]skipped[/] {failure.error}")
    if report.prune_skipped:
        console.print("[yellow]nothing was soft-deleted: a JSONL record failed to load[/]")


@app.command()
def search(
    ctx: typer.Context,
    query: str,
    k: int = typer.Option(10, "-k", min=1, max=1000),
    exact: bool = False,
) -> None:
    """Print the chunks nearest to QUERY, best first."""
    retriever = factory.pipeline(ctx.obj.settings, ctx.obj.db).retriever
    table = Table("rank", "score", "chunk", "article", "text")
    for rank, hit in enumerate(retriever.search(query, k, exact=exact), start=1):
        snippet = " ".join(hit.text.split())[:90]
        table.add_row(str(rank), f"{hit.similarity:.3f}", str(hit.chunk_id), hit.title, snippet)
    console.print(table)


@app.command()
def stats(ctx: typer.Context) -> None:
    """Counts of documents, chunks and embedding versions."""
    with ctx.obj.db.connection() as conn:
        counts = store.counts(conn)
        versions = store.list_versions(conn)
        per_version = {v.version: store.count_embeddings(conn, v.version) for v in versions}
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    table = Table("version", "state", "dim", "vectors", "written by", "model")
    for v in versions:
        table.add_row(
            v.version,
            v.state,
            str(v.dimension),
            str(per_version[v.version]),
            ", ".join(v.backends) or "-",
            v.model_path,
        )
    console.print(table)
    for label, path, kind in _live_encoders(ctx):
        backend = factory.encoder_backend(ctx.obj.settings)
        console.print(f"{label} runs on: {encoders.describe(path, kind, backend)}")


@app.command()
def prepare(ctx: typer.Context) -> None:
    """Export the live embedding model and reranker for AITL_ENCODER_BACKEND now and check them
    against torch float32 (start-up, ingest and promotions do it too; seconds, once per model)."""
    backend = factory.encoder_backend(ctx.obj.settings)
    table = Table("model", "backend", "agreement", "texts/s", "export s", "note")
    for label, path, kind in _live_encoders(ctx):
        choice = encoders.prepare(path, kind, backend)
        for t in choice.trials:
            chosen = "[bold]chosen[/bold]" if t.backend == choice.backend else ""
            table.add_row(
                label,
                t.backend,
                "" if t.agreement is None else f"{t.agreement:.5f}",
                "" if t.texts_per_s is None else f"{t.texts_per_s:.0f}",
                "" if t.export_s is None else f"{t.export_s:.1f}",
                t.error or chosen,
            )
        console.print(f"{label}: {choice.summary()}")
    console.print(table)


def _live_encoders(ctx: typer.Context) -> list[tuple[str, Path, encoders.Kind]]:
    """The live embedding model (if the knowledge base has a live version) and the live
    cross-encoder reranker (the registry's champion, else AITL_RERANKER_MODEL), if any."""
    settings, db = ctx.obj.settings, ctx.obj.db
    found: list[tuple[str, Path, encoders.Kind]] = []
    try:
        _, embedder = factory.embedding_versions(settings, db).live()
        found.append(("embedding model", embedder.path, "embedder"))
    except exceptions.NoLiveEmbeddingVersion:
        pass
    reranker = LivePipeline(settings, db)().reranker
    if isinstance(reranker, CrossEncoderReranker):
        found.append(("reranker", reranker.path, "cross-encoder"))
    return found


@app.command()
def reembed(
    ctx: typer.Context,
    model: Path = typer.Option(..., help="Local sentence-transformers folder"),
    name: str = typer.Option(..., help="Name of the new embedding version"),
    switch: bool = typer.Option(True, help="Make it live once built"),
) -> None:
    """Build a new embedding version beside the live one (blue/green), then switch to it."""
    versions = factory.embedding_versions(ctx.obj.settings, ctx.obj.db)
    with _progress() as progress:
        task = progress.add_task(f"embedding into {name}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        built = versions.build(name, str(model), progress=advance)
        old = versions.switch(built, progress=advance) if switch else None
    console.print(f"built {built}" + (f"; live now (was {old})" if switch else "; not live"))


@app.command(name="switch")
def switch_version(ctx: typer.Context, name: str) -> None:
    """Make an existing embedding version live again (rollback)."""
    old = factory.embedding_versions(ctx.obj.settings, ctx.obj.db).switch(name)
    console.print(f"{name} is live (was {old})")
