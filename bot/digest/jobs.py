"""Queued work of the digest: sending a week's digest and drafting a Help Center article.

A week's send holds a lock named after the week, so a scheduled send and an admin's
``aitl digest send`` cannot post at the same time; the delivery rows do the rest.
"""

from __future__ import annotations

from datetime import date

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued

from aitl.core import queue as queue_jobs

NAMESPACE = "digest"
RETRY = queue_jobs.Backoff(max_attempts=8, exponential_wait=5)


def _services(context: procrastinate.JobContext):
    return context.additional_context["slack"]


def send(context: procrastinate.JobContext, week_start: str | None = None) -> dict:
    digest = _services(context).digest
    window = digest.window(date.fromisoformat(week_start) if week_start else None)
    report = digest.send(window)
    return {"sent": report.sent, "skipped": report.skipped, "already": report.already}


def draft_article(context: procrastinate.JobContext, cluster_key: str, by: str) -> None:
    _services(context).digest.create_article(cluster_key, by)


def blueprint() -> procrastinate.Blueprint:
    bp = procrastinate.Blueprint()
    bp.aitl_namespace = NAMESPACE  # type: ignore[attr-defined]
    for fn in (send, draft_article):
        bp.task(name=fn.__name__, pass_context=True, retry=RETRY)(fn)
    return bp


def defer_send(queue: procrastinate.App, week_start: str | None = None) -> bool:
    """Queue the digest unless one is already waiting; False when one was."""
    try:
        with queue.open():
            queue.configure_task(
                f"{NAMESPACE}:send", queueing_lock="digest:send", lock="digest:send"
            ).defer(week_start=week_start)
    except AlreadyEnqueued:
        return False
    return True


def defer_draft_article(
    queue: procrastinate.App, conn: psycopg.Connection, cluster_key: str, by: str
) -> int:
    """Queued in the caller's transaction, with the request it carries out."""
    return queue.configure_task(
        f"{NAMESPACE}:draft_article", connection=conn, lock=f"gap-article:{cluster_key}"
    ).defer(cluster_key=cluster_key, by=by)
