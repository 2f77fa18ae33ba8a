"""The long-running processes of the Procfile (web, worker, scheduler) and the demo."""

from __future__ import annotations

import json
import logging
import time

import typer
from rich.console import Console

from aitl.cli import drafts, kb
from rag import factory
from rag.models import Message, Ticket

console = Console()
log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(web)
    app.command()(worker)
    app.command()(scheduler)
    app.command()(demo)


def web(
    ctx: typer.Context,
    host: str = typer.Option(None),
    port: int = typer.Option(None),
    workers: int = typer.Option(1, min=1, help="Processes serving requests (the GIL caps one)"),
) -> None:
    """Serve the web app: health, the Zendesk webhook and the Slack endpoint."""
    import uvicorn

    settings = ctx.obj.settings
    host, port = host or settings.web_host, port or settings.web_port
    if workers == 1:
        from aitl.web import create_app

        uvicorn.run(create_app(settings), host=host, port=port)
        return
    # each worker process builds its app from the same environment
    uvicorn.run(
        "aitl.web:app_from_environment", factory=True, host=host, port=port, workers=workers
    )


def worker(ctx: typer.Context) -> None:
    """Run queued jobs from the Postgres queue."""
    from aitl.queue import build_app
    from aitl.wiring import build_services
    from bot import digest_jobs
    from bot import jobs as bot_jobs
    from connectors import jobs as zendesk_jobs
    from flywheel import jobs as flywheel_jobs
    from flywheel.services import FlywheelServices

    settings, db = ctx.obj.settings, ctx.obj.db
    services = build_services(settings, db, services_queue(ctx))
    blueprints = [
        zendesk_jobs.blueprint(),
        bot_jobs.blueprint(),
        flywheel_jobs.blueprint(),
        digest_jobs.blueprint(),
    ]
    build_app(db.url, blueprints).run_worker(
        concurrency=settings.worker_concurrency,
        install_signal_handlers=True,
        additional_context={
            "zendesk": services.zendesk,
            "slack": services.slack,
            "flywheel": FlywheelServices(settings, db),
        },
    )


def services_queue(ctx: typer.Context):
    from aitl.queue import build_deferrer

    return build_deferrer(ctx.obj.db.url)


def scheduler(ctx: typer.Context, poll_s: float = typer.Option(10.0, hidden=True)) -> None:
    """Run scheduled jobs; several may run, one leads (Postgres advisory lock)."""
    from aitl.leader import Leadership
    from aitl.schedule import Schedule

    leadership = Leadership(ctx.obj.db.url)
    found = scheduled_jobs(ctx)
    schedule = Schedule({j: fn for j, _, fn in found}, {j: cron for j, cron, _ in found})
    for job_id, cron, _ in found:
        console.print(f"scheduler: {job_id} at '{cron}' (UTC)")
    try:
        while True:
            if not schedule.running and leadership.try_acquire():
                console.print("scheduler: leading")
                schedule.start()
            elif schedule.running and not leadership.holds():
                console.print("scheduler: lost leadership, pausing")
                schedule.pause()
            if schedule.running:
                _follow_admin_changes(ctx, schedule)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        schedule.pause()
        leadership.release()


def _follow_admin_changes(ctx: typer.Context, schedule) -> None:
    """A cron edited in App Home applies now; a database hiccup only delays it a poll."""
    try:
        changed = schedule.sync(job_crons(_effective_settings(ctx)))
    except Exception:  # the scheduler must outlive a failed read
        log.exception("scheduler: could not re-read the schedules")
        return
    for job_id, cron in changed.items():
        console.print(f"scheduler: {job_id} now at '{cron}' (UTC)")


def _effective_settings(ctx: typer.Context):
    from aitl import overrides

    with ctx.obj.db.connection() as conn:
        return overrides.effective(ctx.obj.settings, conn)


def job_crons(settings) -> dict[str, str]:
    """Each scheduled job's crontab; a job whose part is not configured is absent."""
    crons = {"retrain": settings.retrain_cron}
    if settings.slack_configured:
        crons["digest"] = settings.digest_cron
    if settings.kb_sync_path is not None:
        crons["kb_sync"] = settings.kb_sync_cron
    if settings.zendesk_subdomain or settings.zendesk_base_url:
        crons["zendesk_poll"] = settings.zendesk_poll_cron
        crons["zendesk_kb_sync"] = settings.zendesk_kb_sync_cron
    return crons


def scheduled_jobs(ctx: typer.Context) -> list[tuple[str, str, object]]:
    """What runs on a schedule; slow work is deferred to the worker queue, not run here.

    Crons come from the settings with the admin's App Home changes applied.
    """
    from bot import digest_jobs
    from flywheel import jobs as flywheel_jobs

    db = ctx.obj.db
    settings = _effective_settings(ctx)
    queue = services_queue(ctx)
    functions = {
        "retrain": lambda: flywheel_jobs.defer_cycle(queue, "schedule"),
        "digest": lambda: digest_jobs.defer_send(queue),
        "zendesk_poll": lambda: _defer_once(queue, "connectors:poll"),
        "zendesk_kb_sync": lambda: _defer_once(queue, "connectors:sync_kb"),
    }
    if settings.kb_sync_path is not None:
        ingestor = factory.ingestor(settings, db)
        functions["kb_sync"] = lambda: ingestor.ingest_path(
            settings.kb_sync_path, source="files", max_bytes=settings.max_document_bytes
        )
    return [(job_id, cron, functions[job_id]) for job_id, cron in job_crons(settings).items()]


def _defer_once(queue, task: str) -> None:
    import procrastinate.exceptions

    try:
        with queue.open():
            queue.configure_task(task, queueing_lock=task).defer()
    except procrastinate.exceptions.AlreadyEnqueued:
        log.info("%s is already queued", task)


def demo(
    ctx: typer.Context,
    tickets: int = typer.Option(2, min=1, help="How many sample tickets to answer"),
    once: bool = typer.Option(True, "--once/--keep-running", help="Exit after the run"),
) -> None:
    """Ingest the sample knowledge base and answer sample tickets with two cited drafts."""
    settings = ctx.obj.settings
    console.rule("AITL demo: embedded Postgres + pgvector, MiniLM embeddings, extractive drafts")
    ctx.invoke(
        kb.ingest,
        ctx=ctx,
        path=settings.samples_dir / "kb",
        source="samples",
        prune=True,
        force=False,
    )
    pipeline = factory.pipeline(settings, ctx.obj.db)
    lines = (settings.samples_dir / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines[:tickets]:
        record = json.loads(line)
        ticket = Ticket(
            subject=record["subject"],
            body=record["body"],
            external_id=record["id"],
            thread=tuple(Message(m["author"], m["body"]) for m in record.get("thread", [])),
        )
        console.rule(f"{record['id']}: {record['subject']}")
        console.print(record["body"])
        drafts.print_draft_set(pipeline.draft(ticket))
