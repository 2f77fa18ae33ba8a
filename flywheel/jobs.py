"""Queued work of the flywheel: a whole cycle, and promotions or rollbacks asked for in App Home
(a retriever's promotion re-embeds the knowledge base, which is worker work)."""

from __future__ import annotations

import logging

import procrastinate
from procrastinate import RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued

from flywheel.exceptions import StaleModelChange

log = logging.getLogger(__name__)
NAMESPACE = "flywheel"
CYCLE_LOCK = "flywheel-cycle"


def _services(context: procrastinate.JobContext):
    return context.additional_context["flywheel"]


def cycle(context: procrastinate.JobContext, trigger: str = "schedule") -> None:
    _services(context).run_cycle(trigger)


def promote(context: procrastinate.JobContext, kind: str, version: str, by: str) -> None:
    _services(context).registry.promote(kind, version, f"promoted by {by}")


def rollback(
    context: procrastinate.JobContext, kind: str, by: str, version: str | None = None
) -> None:
    """Roll back ``version``, the champion the admin saw; a stale click is logged, not retried."""
    try:
        _services(context).registry.rollback(kind, f"rolled back by {by}", live=version)
    except StaleModelChange as exc:
        log.warning("rollback asked by %s ignored: %s", by, exc)


def blueprint() -> procrastinate.Blueprint:
    bp = procrastinate.Blueprint()
    bp.aitl_namespace = NAMESPACE  # type: ignore[attr-defined]
    bp.task(name="cycle", pass_context=True, retry=RetryStrategy(max_attempts=1))(cycle)
    bp.task(name="promote", pass_context=True, retry=RetryStrategy(max_attempts=3, wait=30))(
        promote
    )
    bp.task(name="rollback", pass_context=True, retry=RetryStrategy(max_attempts=3, wait=30))(
        rollback
    )
    return bp


def defer_cycle(queue: procrastinate.App, trigger: str) -> bool:
    """Queue one cycle unless one is already waiting."""
    try:
        with queue.open():
            queue.configure_task(
                f"{NAMESPACE}:cycle", queueing_lock=CYCLE_LOCK, lock=CYCLE_LOCK
            ).defer(trigger=trigger)
    except AlreadyEnqueued:
        log.info("a flywheel cycle is already queued")
        return False
    return True


def defer_model_change(queue: procrastinate.App, task: str, **kwargs: str) -> int:
    with queue.open():
        return queue.configure_task(f"{NAMESPACE}:{task}", lock=CYCLE_LOCK).defer(**kwargs)
