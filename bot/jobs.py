"""Queued work of the bot (procrastinate tasks) and how to defer it.

A click is recorded and its card refresh queued in one transaction. Refreshes of one card
share a queueing lock: while one is waiting, later clicks add nothing, and the refresh that
runs renders every answer recorded by then.
"""

from __future__ import annotations

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued

from aitl.core import queue as queue_jobs

NAMESPACE = "bot"
RETRY = queue_jobs.Backoff(max_attempts=8, exponential_wait=2)


def _services(context: procrastinate.JobContext):
    return context.additional_context["slack"]


def refresh_card(
    context: procrastinate.JobContext, card_id: int, response_url: str | None = None
) -> None:
    _services(context).cards.refresh(card_id, response_url)


def ask(
    context: procrastinate.JobContext,
    user_id: str,
    channel_id: str,
    question: str,
    response_url: str,
    ask_id: str,
) -> None:
    _services(context).cards.answer_question(
        user_id=user_id,
        channel_id=channel_id,
        question=question,
        response_url=response_url,
        ask_id=ask_id,
    )


def blueprint() -> procrastinate.Blueprint:
    """A fresh blueprint per queue app (procrastinate binds a blueprint to one app)."""
    bp = procrastinate.Blueprint()
    bp.aitl_namespace = NAMESPACE  # type: ignore[attr-defined]
    for fn in (refresh_card, ask):
        bp.task(name=fn.__name__, pass_context=True, retry=RETRY)(fn)
    return bp


def defer_refresh(
    queue: procrastinate.App, conn: psycopg.Connection, card_id: int, response_url: str | None
) -> bool:
    """Queue a refresh unless one is already waiting; False when one was."""
    lock = f"slack-card:{card_id}"
    if queue_jobs.is_queued(conn, lock):
        return False
    try:
        with conn.transaction():  # a savepoint: a refused duplicate must not abort the click
            queue.configure_task(
                f"{NAMESPACE}:refresh_card", connection=conn, queueing_lock=lock, lock=lock
            ).defer(card_id=card_id, response_url=response_url)
    except AlreadyEnqueued:
        return False
    return True


def defer_ask(queue: procrastinate.App, conn: psycopg.Connection, **kwargs: str) -> int:
    task = queue.configure_task(f"{NAMESPACE}:ask", connection=conn, lock=f"ask:{kwargs['ask_id']}")
    return task.defer(**kwargs)
