"""Queued work of the flywheel: a whole cycle, and promotions or rollbacks asked for in App Home
(a retriever's promotion re-embeds the knowledge base, which is worker work). The admin who
asked for a change is told how it ended, through whatever the worker was given to tell with."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import procrastinate
import psycopg
from procrastinate import RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued

from aitl.core import queue as job_queue
from flywheel.exceptions import CycleFailed, RegistryError, RunInProgress
from flywheel.memory import MemoryBuilder
from flywheel.reports import cycle_note, first_line

log = logging.getLogger(__name__)
NAMESPACE = "flywheel"
CYCLE_LOCK = "flywheel-cycle"
CYCLE_RETRIES = 1  # a failed cycle is tried once more (a passing fault); it changed nothing live
MODEL_CHANGE_RETRIES = 3  # retries after the first try, for what the registry did not refuse
# the job (a cycle or a model change) telling people how it ended: its work is done, so App
# Home, published again as it tells, no longer shows it as pending
_FINISHING: ContextVar[int | None] = ContextVar("finishing_job", default=None)


def _services(context: procrastinate.JobContext):
    return context.additional_context["flywheel"]


def cycle(
    context: procrastinate.JobContext, trigger: str = "schedule", by: str | None = None
) -> None:
    """One cycle; the admins hear how it ended, as far as they chose to, and ``by`` (the admin
    who asked in App Home) always does. A cycle already running (from the CLI) means this one
    is skipped, not retried."""
    services = _services(context)
    note = functools.partial(cycle_note, trigger=trigger, by=by)
    with _finishing(context):
        _cycle(services, trigger, note, by=by, last_try=context.job.attempts >= CYCLE_RETRIES)


def _cycle(
    services, trigger: str, note: Callable[..., str], *, by: str | None, last_try: bool
) -> None:
    try:
        report = services.run_cycle(trigger)
    except RunInProgress:
        services.tell_cycle_end(
            note(run_id=None, status="skipped", error="another cycle was running (from the CLI?)"),
            outcome="unchanged",
            asked_by=by,
        )
        return
    except Exception as exc:
        if last_try:  # a failure retried is said once, when the retry failed too
            run_id, error = (
                (exc.run_id, exc.error)
                if isinstance(exc, CycleFailed)
                else (None, f"{type(exc).__name__}: {exc}")  # before its run was recorded
            )
            services.tell_cycle_end(
                note(run_id=run_id, status="failed", error=error), outcome="failed", asked_by=by
            )
        raise
    promoted = any(decision.get("promoted") for decision in report.decisions.values())
    outcome = "promoted" if promoted else "unchanged"
    services.tell_cycle_end(
        note(
            run_id=report.run_id,
            status=report.status,
            seconds=report.seconds,
            decisions=report.decisions,
            error=report.error,
            warnings=report.warnings,
        ),
        # a warning (a judge rule dropping an unusual share) reaches every admin who hears of
        # anything at all, whatever else happened
        outcome="warning" if report.warnings else outcome,
        asked_by=by,
    )


def duel(context: procrastinate.JobContext) -> None:
    """Check the online A/B test of the generators and act if it has decided; admins are told
    as for a cycle (a promotion as a change, a retirement as no change to what serves)."""
    _services(context).decide_duel()


def promote(context: procrastinate.JobContext, kind: str, version: str, by: str) -> None:
    services = _services(context)
    with _told(context, by, f"Promoting {kind} `{version}`"):
        services.registry.promote(kind, version, f"promoted by <@{by}> in App Home")
        services.tell(by, f"{kind} `{version}` is live: it serves the next drafts.")
    if kind == "retriever":
        _refresh_memory(context)


def memory(context: procrastinate.JobContext) -> None:
    """Bring the feedback memory up to date with the clicks (``flywheel.memory``)."""
    _memory_builder(context).refresh()


def _memory_builder(context: procrastinate.JobContext) -> MemoryBuilder:
    """The worker's builder (it knows the tickets' brands), else one from the settings."""
    builder = context.additional_context.get("memory")
    if builder is None:
        services = _services(context)
        builder = MemoryBuilder(services.settings, services.db)
    return builder


def _refresh_memory(context: procrastinate.JobContext) -> None:
    """A retriever change moves the live embedding version: the memory is rebuilt under it
    now rather than at the next refresh. A failure here is the cron's to catch up on."""
    try:
        _memory_builder(context).refresh()
    except Exception:
        log.exception("could not rebuild the feedback memory after the retriever changed")


def rollback(
    context: procrastinate.JobContext, kind: str, by: str, version: str | None = None
) -> None:
    """Roll back ``version``, the champion the admin saw; a stale click changes nothing."""
    services = _services(context)
    what = f"{kind} `{version}`" if version else f"the live {kind}"
    with _told(context, by, f"Rolling back {what}"):
        previous = services.registry.rollback(
            kind, f"rolled back by <@{by}> in App Home", live=version
        )
        back = f"`{previous.version}`" if previous else "the shipped model"
        services.tell(by, f"{what} rolled back: {back} serves the next drafts.")
    if kind == "retriever":
        _refresh_memory(context)


@contextmanager
def _told(context: procrastinate.JobContext, by: str, what: str) -> Iterator[None]:
    """The admin who asked hears how it ended. What the registry refuses (a stale click, an
    unknown model) is final: said, not retried. Anything else is retried, and said only when
    the last attempt fails too."""
    services = _services(context)
    with _finishing(context):
        try:
            yield
        except RegistryError as exc:
            log.warning("%s, asked by %s, refused: %s", what.lower(), by, exc)
            services.tell(by, f"{what} did not happen: {exc}.")
        except Exception as exc:
            if context.job.attempts >= MODEL_CHANGE_RETRIES:
                tries = context.job.attempts + 1
                services.tell(by, f"{what} failed after {tries} tries: {first_line(str(exc))}")
            raise


@contextmanager
def _finishing(context: procrastinate.JobContext) -> Iterator[None]:
    """While this job tells people how it ended, App Home no longer counts it as pending."""
    token = _FINISHING.set(context.job.id)
    try:
        yield
    finally:
        _FINISHING.reset(token)


@dataclass(frozen=True)
class PendingChange:
    kind: str  # '' for a retrain: it may change every kind
    version: str
    change: str  # 'promote' | 'rollback' | 'retrain'
    by: str  # '' for the scheduled retrain
    running: bool
    failed_tries: int = 0  # tries that failed so far: a change waiting for its retry


CHANGES = {"promote": "promote", "rollback": "rollback", "cycle": "retrain"}  # task → change


def pending_model_changes(conn: psycopg.Connection) -> list[PendingChange]:
    """Retrains, promotions and rollbacks queued or running, oldest first: App Home shows
    them and holds back the buttons that would ask for the same again until they are done."""
    tasks = [f"{NAMESPACE}:{task}" for task in CHANGES]
    rows = job_queue.jobs_of(conn, tasks, exclude=_FINISHING.get())
    return [
        PendingChange(
            kind=args.get("kind", ""),
            version=args.get("version") or "",
            change=CHANGES[task.removeprefix(f"{NAMESPACE}:")],
            by=args.get("by") or "",
            running=status == "doing",
            failed_tries=attempts,
        )
        for task, args, status, attempts in rows
    ]


def blueprint() -> procrastinate.Blueprint:
    bp = procrastinate.Blueprint()
    bp.aitl_namespace = NAMESPACE  # type: ignore[attr-defined]
    bp.task(name="cycle", pass_context=True, retry=RetryStrategy(max_attempts=CYCLE_RETRIES))(cycle)
    model_change = RetryStrategy(max_attempts=MODEL_CHANGE_RETRIES, wait=30)
    bp.task(name="duel", pass_context=True, retry=RetryStrategy(max_attempts=1))(duel)
    bp.task(name="promote", pass_context=True, retry=model_change)(promote)
    bp.task(name="rollback", pass_context=True, retry=model_change)(rollback)
    # the next cron tick retries a failed refresh
    bp.task(name="memory", pass_context=True, retry=RetryStrategy(max_attempts=0))(memory)
    return bp


def defer_cycle(
    queue: procrastinate.App,
    trigger: str,
    by: str | None = None,
    conn: psycopg.Connection | None = None,
) -> bool:
    """Queue one cycle unless one is already waiting; with ``conn``, in its transaction."""
    asked = {"by": by} if by else {}
    lock = {"queueing_lock": CYCLE_LOCK, "lock": CYCLE_LOCK}
    try:
        _defer(queue, conn, f"{NAMESPACE}:cycle", lock, trigger=trigger, **asked)
    except AlreadyEnqueued:
        log.info("a flywheel cycle is already queued")
        return False
    return True


def defer_model_change(
    queue: procrastinate.App, task: str, conn: psycopg.Connection | None = None, **kwargs: str
) -> int | None:
    """Queue a promotion or rollback; None when the same change is already waiting (a double
    click), so it is made once."""
    waiting = f"{task}:{kwargs.get('kind', '')}:{kwargs.get('version', '')}"
    lock = {"queueing_lock": waiting, "lock": CYCLE_LOCK}
    try:
        return _defer(queue, conn, f"{NAMESPACE}:{task}", lock, **kwargs)
    except AlreadyEnqueued:
        log.info("the %s is already queued", waiting)
        return None


def _defer(
    queue: procrastinate.App,
    conn: psycopg.Connection | None,
    task: str,
    locks: dict[str, str],
    **kwargs: str,
) -> int:
    """Defer on ``conn`` inside a savepoint (a refused duplicate must not abort the caller's
    transaction), or on the queue's own connection."""
    if conn is None:
        with queue.open():
            return queue.configure_task(task, **locks).defer(**kwargs)
    with conn.transaction():
        return queue.configure_task(task, connection=conn, **locks).defer(**kwargs)
