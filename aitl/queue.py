"""The durable job queue: procrastinate on the same Postgres.

Product packages declare their tasks on a ``procrastinate.Blueprint``; the process wiring
adds those blueprints here, so this base module imports no product package.
"""

from __future__ import annotations

from collections.abc import Iterable

import procrastinate


def build_app(url: str, blueprints: Iterable[procrastinate.Blueprint] = ()) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
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
