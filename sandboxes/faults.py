"""Injected faults and the call log, the one skeleton both local sandboxes (Slack, Zendesk) use.

A test asks a sandbox to fail or hold its next calls; the sandbox's HTTP layer takes the
first fault that matches a call and answers through :func:`around`, and records every call
it answered so tests can assert what a client sent. What a fault matches on is each
sandbox's own (a Web API method; an HTTP method and a path), so it lives in a subclass.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

F = TypeVar("F", bound="Fault")
C = TypeVar("C")
R = TypeVar("R")


@dataclass(kw_only=True)
class Fault:
    """A failure or delay for the next ``remaining`` matching calls.

    ``status`` answers with that HTTP status; ``seconds`` holds the answer; ``after_apply``
    says whether the call takes effect before the delay or failure, because a client that
    times out or sees a 5xx may still have written: the case retries must survive.
    """

    remaining: int
    status: int | None = None
    retry_after: int | None = None
    seconds: float = 0.0
    after_apply: bool = True


class FaultLog(Generic[F, C]):
    """The faults not used up yet and every call answered, behind the sandbox's own lock,
    so a test's thread and the server's see one consistent sandbox."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._faults: list[F] = []
        self._calls: list[C] = []

    def add(self, fault: F) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, matches: Callable[[F], bool]) -> F | None:
        """Use one turn of the first live fault that ``matches`` (oldest first), if any."""
        with self._lock:
            fault = next((f for f in self._faults if f.remaining > 0 and matches(f)), None)
            if fault is not None:
                fault.remaining -= 1
            return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def record(self, call: C) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self, wanted: Callable[[C], bool] | None = None) -> list[C]:
        """A copy of the log (those ``wanted``), so callers never see it change under them."""
        with self._lock:
            return [c for c in self._calls if wanted is None or wanted(c)]


async def around(fault: F | None, call: Callable[[], Awaitable[R]], failure: Callable[[F], R]) -> R:
    """Answer ``call`` as ``fault`` says: refused before it takes effect, or held then done;
    with ``after_apply``, done then held and, with a status, answered as a failure anyway."""
    if fault is None:
        return await call()
    if not fault.after_apply:
        if fault.status is not None:
            return failure(fault)
        await asyncio.sleep(fault.seconds)
    answer = await call()
    if fault.after_apply:
        await asyncio.sleep(fault.seconds)
        if fault.status is not None:
            return failure(fault)
    return answer
