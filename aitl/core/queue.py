"""The durable job queue: procrastinate on the same Postgres.

Product packages declare their tasks on a ``procrastinate.Blueprint``; the process wiring
adds those blueprints here, so this base module imports no product package.

A worker killed mid-job (kill -9, out of memory, a lost host) leaves its job in ``doing``
forever, and with it the job's lock: every later job of that ticket would wait behind it.
Procrastinate finds such jobs (their worker's heartbeat stopped) but leaves the retry to us,
so every worker sweeps them when it starts and then every ``SWEEP_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import procrastinate
import procrastinate.exceptions
import procrastinate.tasks
from procrastinate import jobs as procrastinate_jobs

from aitl.core.exceptions import NotRetryable

log = logging.getLogger(__name__)
# procrastinate's workers beat every 10 s and count as stalled after 30 s without a beat
STALLED_AFTER_S = 30.0
SWEEP_EVERY_S = 15.0


class QueueApp(procrastinate.App):
    """procrastinate's app whose workers put the jobs of dead workers back in the queue."""

    async def run_worker_async(self, **kwargs: Any) -> None:
        await recover_stalled(self)
        if not kwargs.get("wait", True):
            await super().run_worker_async(**kwargs)
            return
        sweeper = asyncio.create_task(_sweep(self), name="aitl-stalled-jobs")
        try:
            await super().run_worker_async(**kwargs)
        finally:
            sweeper.cancel()


async def _sweep(app: procrastinate.App) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            await recover_stalled(app)
        except Exception:  # a database hiccup only delays the sweep; the worker goes on
            log.exception("could not look for stalled jobs")


async def recover_stalled(app: procrastinate.App) -> list[int]:
    """Retry the jobs of workers that stopped beating; fail those out of attempts.

    The dead worker's attempt counts as a failed one: the job is retried at once when its
    task's retry strategy would retry a failure (procrastinate's rule: fewer previous
    attempts than ``max_attempts``), else failed, so a job that kills its worker cannot loop
    and its lock is released.
    """
    manager = app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S)
    retried = []
    for job in stalled:
        task = app.tasks.get(job.task_name)
        if task is None:  # left to a worker that knows the task and its retry strategy
            continue
        if job.attempts < _retries(task):
            try:
                await manager.retry_job(job)
            except procrastinate.exceptions.UniqueViolation:
                # a newer job with the same queueing lock is already waiting: it does this
                # job's work, so the dead one is failed (which also releases its lock)
                await _fail(manager, job, "a newer job of the same kind is queued")
                continue
            retried.append(job.id)
            log.warning("job %s (%s) of a dead worker is retried", job.id, job.task_name)
        else:
            await _fail(manager, job, "no attempt left")
    return retried


async def _fail(manager: Any, job: procrastinate_jobs.Job, why: str) -> None:
    await manager.finish_job(job, procrastinate_jobs.Status.FAILED, delete_job=False)
    log.warning("job %s (%s) of a dead worker is failed: %s", job.id, job.task_name, why)


def _retries(task: procrastinate.tasks.Task) -> int:
    strategy = task.retry_strategy
    return (strategy.max_attempts or 0) if strategy is not None else 0


class Backoff(procrastinate.RetryStrategy):
    """procrastinate's retry strategy, except that an error marked ``NotRetryable`` ends the
    job at once: retrying it would only repeat the same refusal until the attempts run out."""

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
        if isinstance(exception, NotRetryable):
            return None
        return super().get_retry_decision(exception=exception, job=job)


def build_app(url: str, blueprints: Iterable[procrastinate.Blueprint] = ()) -> procrastinate.App:
    app = QueueApp(connector=procrastinate.PsycopgConnector(conninfo=url))
    for blueprint in blueprints:
        app.add_tasks_from(blueprint, namespace=blueprint_namespace(blueprint))
    return app


def blueprint_namespace(blueprint: procrastinate.Blueprint) -> str:
    return getattr(blueprint, "aitl_namespace", "aitl")


def build_deferrer(url: str) -> procrastinate.App:
    """An app used only to defer jobs from sync code, on the caller's own connection.

    Kept apart from the worker's app: once a worker opens its async pool, procrastinate
    would run a sync defer through the async connector and fail on a sync connection.
    """
    return build_app(url)


def is_queued(conn, queueing_lock: str) -> bool:
    """Whether a job with this queueing lock is waiting; one index lookup, no exception path."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %s"
        " AND status = 'todo')",
        (queueing_lock,),
    ).fetchone()
    return bool(row[0])


def waiting_jobs(conn) -> int:
    """Jobs of any task waiting or running: none means the worker has caught up."""
    return conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    ).fetchone()[0]


def jobs_of(
    conn, task_names: Sequence[str], *, exclude: int | None = None
) -> list[tuple[str, dict[str, Any], str, int]]:
    """(task name, args, status, attempts) of the jobs of these tasks waiting or running,
    oldest first, leaving out job ``exclude`` (the one asking)."""
    return conn.execute(
        "SELECT task_name, args, status, attempts FROM procrastinate_jobs"
        " WHERE task_name = ANY(%s) AND status IN ('todo', 'doing')"
        " AND id IS DISTINCT FROM %s ORDER BY id",
        (list(task_names), exclude),
    ).fetchall()
