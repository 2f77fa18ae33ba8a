"""A dead worker's jobs go back to the queue, on real Postgres with procrastinate's schema.

The worker processes themselves are killed in test_faults_processes; here the sweep's edge
cases are driven directly: a job that has attempts left, one that has none, and one whose
queueing lock a newer job took while it was stuck (retrying it would break the lock).
"""

from __future__ import annotations

import asyncio

import procrastinate

from aitl.core.queue import build_app, recover_stalled

blueprint = procrastinate.Blueprint()
blueprint.aitl_namespace = "probe"  # type: ignore[attr-defined]


@blueprint.task(name="retried", retry=2)
def retried(n: int) -> None:
    """A job the queue may run again."""


@blueprint.task(name="once")
def once(n: int) -> None:
    """A job with no retry: a dead worker's attempt was its only one."""


def status(db, job_id: int) -> str:
    with db.connection() as conn:
        return conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
        ).fetchone()[0]


def stuck(db, *job_ids: int) -> None:
    """Put jobs where a SIGKILLed worker leaves them: ``doing``, on a worker long silent."""
    with db.connection() as conn:
        worker = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')"
            " RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = ANY(%s)",
            (worker, list(job_ids)),
        )


def test_a_dead_workers_jobs_are_retried_failed_or_left_to_the_newer_job(db):
    app = build_app(db.url, [blueprint])

    async def scenario() -> tuple[list[int], dict[str, int]]:
        async with app.open_async():
            defer = app.configure_task
            ids = {
                "retried": await defer("probe:retried").defer_async(n=1),
                "once": await defer("probe:once").defer_async(n=2),
                "locked": await defer("probe:retried", queueing_lock="card:7").defer_async(n=3),
            }
            stuck(db, *ids.values())
            ids["newer"] = await defer("probe:retried", queueing_lock="card:7").defer_async(n=4)
            return await recover_stalled(app), ids

    retried_ids, ids = asyncio.run(scenario())
    assert retried_ids == [ids["retried"]]
    assert status(db, ids["retried"]) == "todo"
    assert status(db, ids["once"]) == "failed"
    # the newer job holds the lock and does the work; the stuck one is failed, not looping
    assert status(db, ids["locked"]) == "failed"
    assert status(db, ids["newer"]) == "todo"
    # a second sweep finds nothing left in ``doing``
    assert asyncio.run(_sweep_again(app)) == []


async def _sweep_again(app: procrastinate.App) -> list[int]:
    async with app.open_async():
        return await recover_stalled(app)
