"""Queued work of the connector (procrastinate tasks) and how to defer it.

Deferring always happens on the caller's own connection, inside its transaction: a webhook
event, a draft request or a write-back is recorded together with its job, or not at all.
Jobs of one ticket share a lock, so they run one after the other.
"""

from __future__ import annotations

import procrastinate

from aitl.core import queue as queue_jobs

NAMESPACE = "connectors"
RETRY = queue_jobs.Backoff(max_attempts=8, exponential_wait=2)
SLOW_RETRY = queue_jobs.Backoff(max_attempts=3, wait=60)


def _services(context: procrastinate.JobContext):
    return context.additional_context["zendesk"]


def process_event(context: procrastinate.JobContext, event_id: str) -> None:
    _services(context).process_event(event_id)


def draft(context: procrastinate.JobContext, request_id: int) -> None:
    _services(context).draft(request_id)


def write_back(context: procrastinate.JobContext, writeback_id: int) -> None:
    _services(context).write_back(writeback_id)


def poll(context: procrastinate.JobContext) -> None:
    _services(context).poll()


def sync_kb(context: procrastinate.JobContext) -> None:
    _services(context).sync_kb()


def blueprint() -> procrastinate.Blueprint:
    """A fresh blueprint per queue app (procrastinate binds a blueprint to one app)."""
    bp = procrastinate.Blueprint()
    bp.aitl_namespace = NAMESPACE  # type: ignore[attr-defined]
    for fn, retry in (
        (process_event, RETRY),
        (draft, RETRY),
        (write_back, RETRY),
        (poll, SLOW_RETRY),
        (sync_kb, SLOW_RETRY),
    ):
        bp.task(name=fn.__name__, pass_context=True, retry=retry)(fn)
    return bp


def _defer(queue: procrastinate.App, conn, task: str, lock: str | None, **kwargs) -> int:
    return queue.configure_task(f"{NAMESPACE}:{task}", connection=conn, lock=lock).defer(**kwargs)


def defer_event(queue: procrastinate.App, conn, event_id: str, ticket_id: int) -> int:
    return _defer(queue, conn, "process_event", f"zendesk-ticket:{ticket_id}", event_id=event_id)


def defer_draft(queue: procrastinate.App, conn, request_id: int, ticket_id: int) -> int:
    return _defer(queue, conn, "draft", f"zendesk-ticket:{ticket_id}", request_id=request_id)


def defer_write_back(queue: procrastinate.App, conn, writeback_id: int, ticket_id: int) -> int:
    return _defer(
        queue, conn, "write_back", f"zendesk-ticket:{ticket_id}", writeback_id=writeback_id
    )
