"""The long-running processes of the Procfile (web, worker, scheduler) and the demo."""

from __future__ import annotations

import logging
import time

import procrastinate.exceptions
import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from aitl.app.demo import Demo, DemoOptions
from aitl.app.schedule import Schedule
from aitl.app.web import create_app
from aitl.app.wiring import build_services, flywheel_services, memory_builder, warm
from aitl.core import overrides
from aitl.core.leader import Leadership
from aitl.core.queue import build_app, build_deferrer
from aitl.core.servers import serve_in_thread
from bot import jobs as bot_jobs
from bot.digest import jobs as digest_jobs
from connectors import jobs as zendesk_jobs
from flywheel import jobs as flywheel_jobs
from rag import factory
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import BOT_TOKEN, SIGNING_SECRET
from sandboxes.zendesk.server import ZendeskSandbox
from sandboxes.zendesk.server import create_app as zendesk_app

console = Console()
log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(web)
    app.command()(worker)
    app.command()(scheduler)
    app.command()(demo)
    app.command()(sandbox)


def web(
    ctx: typer.Context,
    host: str = typer.Option(None),
    port: int = typer.Option(None),
    workers: int = typer.Option(1, min=1, help="Processes serving requests (the GIL caps one)"),
) -> None:
    """Serve the web app: health, the Zendesk webhook and the Slack endpoint."""

    settings = ctx.obj.settings
    host, port = host or settings.web_host, port or settings.web_port
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port)
        return
    # each worker process builds its app from the same environment
    uvicorn.run(
        "aitl.app.web:app_from_environment", factory=True, host=host, port=port, workers=workers
    )


def worker(ctx: typer.Context) -> None:
    """Run queued jobs from the Postgres queue."""

    settings, db = ctx.obj.settings, ctx.obj.db
    services = build_services(settings, db, services_queue(ctx))
    warm(services)  # before it registers with the queue: the first job finds the models loaded
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
            "flywheel": flywheel_services(settings, db, services.slack),
            "memory": memory_builder(settings, db),
        },
    )


def services_queue(ctx: typer.Context):

    return build_deferrer(ctx.obj.db.url)


def scheduler(ctx: typer.Context, poll_s: float = typer.Option(10.0, hidden=True)) -> None:
    """Run scheduled jobs; several may run, one leads (Postgres advisory lock)."""

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

    with ctx.obj.db.connection() as conn:
        return overrides.effective(ctx.obj.settings, conn)


def job_crons(settings) -> dict[str, str]:
    """Each scheduled job's crontab; a job whose part is not configured is absent."""
    crons = {
        "retrain": settings.retrain_cron,
        "duel": settings.duel_cron,
        "memory": settings.memory_refresh_cron,
    }
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

    db = ctx.obj.db
    settings = _effective_settings(ctx)
    queue = services_queue(ctx)
    functions = {
        "retrain": lambda: flywheel_jobs.defer_cycle(queue, "schedule"),
        "duel": lambda: _defer_once(queue, f"{flywheel_jobs.NAMESPACE}:duel"),
        "memory": lambda: _defer_once(queue, f"{flywheel_jobs.NAMESPACE}:memory"),
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

    try:
        with queue.open():
            queue.configure_task(task, queueing_lock=task).defer()
    except procrastinate.exceptions.AlreadyEnqueued:
        log.info("%s is already queued", task)


def sandbox(
    port: int = typer.Option(8090, min=0, max=65535, help="The Slack sandbox (API and page)."),
    zendesk_port: int = typer.Option(8091, min=0, max=65535, help="The Zendesk sandbox."),
    app_url: str | None = typer.Option(
        None,
        help="Where clicks go: the app's /slack/events, e.g. http://127.0.0.1:8000/slack/events",
    ),
) -> None:
    """Serve the local Slack and Zendesk sandboxes until Ctrl-C (development and evaluation)."""

    slack, zendesk = SlackSandbox(), ZendeskSandbox()
    slack.app_url = app_url
    with serve(slack, port=port), serve_in_thread(zendesk_app(zendesk), port=zendesk_port) as zd:
        zendesk.url = zd.url
        console.print(f"Slack sandbox: {slack.base_url}/ (Web API at {slack.base_url}/api/)")
        console.print(f"Zendesk sandbox: {zd.url}/sandbox/zendesk (API at {zd.url}/api/v2/)")
        console.print(
            f"Point the app at them: AITL_SLACK_API_URL={slack.base_url}/api/"
            f" AITL_SLACK_BOT_TOKEN={BOT_TOKEN} AITL_SLACK_SIGNING_SECRET={SIGNING_SECRET}"
            f" AITL_ZENDESK_BASE_URL={zd.url} AITL_ZENDESK_EMAIL={zendesk.agent_email}"
            f" AITL_ZENDESK_API_TOKEN={zendesk.api_token}"
        )
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    zendesk.close()


def demo(
    ctx: typer.Context,
    tickets: int = typer.Option(
        200, min=1, help="Sample tickets to stream, spread over the weeks (the stream has 300)."
    ),
    agents: int = typer.Option(4, min=1, max=8, help="Simulated agents clicking."),
    noise: float = typer.Option(0.2, min=0, max=1, help="Share of relevance marks flipped."),
    careless: float = typer.Option(0.1, min=0, max=1, help="Share of cards clicked unread."),
    port: int = typer.Option(8090, min=0, max=65535, help="The Slack sandbox page's port."),
    llm_share: float = typer.Option(
        0.35,
        min=0,
        max=1,
        help="Share of tickets drafted extractive vs LLM (the rest: two styles).",
    ),
    cycles: int = typer.Option(2, min=0, help="Weekly cycles, spread over the weeks."),
    quick: bool = typer.Option(
        False, "--quick", help="A shorter run: 120 tickets, the LLM trained on 8 pairs."
    ),
    once: bool = typer.Option(
        False, "--once", "--no-browser", help="Exit after the table instead of serving the page."
    ),
) -> None:
    """The whole loop on the embedded defaults, against local Slack and Zendesk sandboxes."""

    options = DemoOptions(
        tickets=min(tickets, 120) if quick else tickets,
        agents=agents,
        noise=noise,
        careless=careless,
        sandbox_port=port,
        challenger_share=llm_share,
        cycles=cycles,
        **({"generator_pairs": 8, "generator_eval_tickets": 4} if quick else {}),
    )
    console.rule("AITL demo: Zendesk → drafts in Slack → clicks → retraining → digest")
    started = time.monotonic()
    report = Demo(ctx.obj.settings, ctx.obj.db, options, console.print).run(
        keep_running=None if once else _serve_until_interrupted
    )
    if once:
        _print_demo(report, time.monotonic() - started)


def _serve_until_interrupted(report) -> None:
    _print_demo(report, None)
    console.print(
        f"\n[bold]Open {report.sandbox_url}/[/] to click through the threads yourself"
        f" (Zendesk tickets: {report.zendesk_url}). Ctrl-C stops everything."
    )
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")


def _print_demo(report, seconds: float | None) -> None:

    console.print(
        f"{report.tickets} tickets over {report.weeks} simulated weeks (from the week of"
        f" {report.first_week}) → {report.threads} Slack threads; {report.clicks:,} clicks sent,"
        f" {report.replies_sent:,} replies sent in Zendesk, {report.events:,} events stored"
        + (f"; {seconds:,.0f} s" if seconds is not None else "")
    )
    if report.settings_note:
        console.print(report.settings_note)
    for outcome in report.cycles:
        _print_cycle(outcome)
    if not report.cycles:
        console.print("no cycle ran (fewer than two weeks of tickets)")
    console.print(_changed(report))
    console.print(
        "the online A/B test of the drafts (Prefer clicks, ties half, both bad left out):"
    )
    for line in report.duel_decisions:
        console.print(f"  {line}")
    console.print(f"  now: {report.duel}")
    digest = report.digest
    console.print(
        f"digest of the week of {digest.get('week')}: sent to {', '.join(digest.get('sent', []))}"
        + (f"; skipped {digest['skipped']}" if digest.get("skipped") else "")
    )


def _changed(report) -> str:
    """What the loop changed in the models, in one line, or plainly that it changed nothing."""
    changes = [
        f"the cycle after week {c.after_week} promoted the {kind} ({d.get('metric') or 'gate'}"
        f" {_gain(c.run, kind, d.get('metric'))})"
        for c in report.cycles
        for kind, d in (c.run.get("decisions") or {}).items()
        if d.get("promoted")
    ]
    changes += [
        line.split(". ", 1)[0].removeprefix("Online A/B test: ") for line in report.duel_decisions
    ]
    if not changes:
        return (
            "what the loop changed: nothing was promoted or retired; no trained model beat the"
            " live one on the held-out tickets (each cycle's reasons above) and the online test"
            " has not decided yet"
        )
    return "what the loop changed: " + "; ".join(changes)


def _gain(run, kind: str, metric: str | None) -> str:
    figures = (run.get("metrics") or {}).get(kind) or {}
    before = (figures.get("champion") or {}).get(metric)
    after = (figures.get("challenger") or {}).get(metric)
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return ""
    return f"{before:.4f} → {after:.4f}"


def _print_cycle(outcome) -> None:
    """One cycle: the gate's figures and decisions, then what agents saw before and after."""
    run = outcome.run
    table = Table(
        title=f"the cycle after week {outcome.after_week} ({outcome.ran_at:%a %d %b %H:%M} UTC):"
        f" {run.get('status')}, {run.get('seconds')} s"
        + (
            f"; models judged on {run['held_out']} held-out tickets"
            if run.get("held_out") is not None
            else ""
        )
    )
    for column in ("model", "metric", "before (champion)", "after (challenger)", "decision"):
        table.add_column(column)
    decisions = run.get("decisions") or {}
    for kind, metrics in (run.get("metrics") or {}).items():
        decision = decisions.get(kind, {})
        verdict = "promoted" if decision.get("promoted") else "kept"
        champion, challenger = metrics.get("champion", {}), metrics.get("challenger", {})
        names = [
            n
            for n in (champion or challenger)
            if isinstance((champion or challenger)[n], int | float)
        ]
        for n, name in enumerate(names):
            deciding = name == decision.get("metric")
            table.add_row(
                kind if n == 0 else "",
                f"{name} ◀" if deciding else name,
                _number(champion.get(name)),
                _number(challenger.get(name)),
                verdict if n == 0 else "",
            )
    for kind in decisions:
        if kind not in (run.get("metrics") or {}):
            table.add_row(kind, "", "", "", "skipped")
    console.print(table)
    if run.get("error"):
        console.print(f"  {run['error']}")
    for kind, decision in decisions.items():
        console.print(f"  {kind}: {decision.get('reason', '')}")
    training = ((run.get("metrics") or {}).get("generator") or {}).get("training")
    if training:
        console.print(
            f"  generator training: {training['pairs']} preference pairs"
            f" ({training['left_by_cap']} older left by the cap) in {training['seconds']} s,"
            f" {training['pairs_per_s']} pairs/s"
        )
    seen = Table(
        title=f"what agents saw: weeks {_weeks(outcome.weeks_before)} before it vs weeks"
        f" {_weeks(outcome.weeks_after)} after it (95% intervals)"
    )
    for column in ("figure", "before", "after", "change"):
        seen.add_column(column)
    for row in outcome.seen:
        seen.add_row(*row)
    console.print(seen)


def _weeks(weeks) -> str:
    return f"{weeks[0]}–{weeks[-1]}" if len(weeks) > 1 else str(weeks[0]) if weeks else "none"


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "n/a"
