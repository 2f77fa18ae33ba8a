"""One holder at a time, through session-level Postgres advisory locks: the scheduler that
leads, the flywheel cycle that runs, the model change that is being made."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import psycopg

SCHEDULER_LOCK = "aitl.scheduler"


class Leadership:
    """Holds a dedicated connection; leadership lasts as long as that connection lives."""

    def __init__(self, url: str, name: str = SCHEDULER_LOCK) -> None:
        self.url = url
        self.name = name
        self._conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = psycopg.connect(self.url, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.name,)).fetchone()
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def holds(self) -> bool:
        """Still the leader: the connection (and so the lock) is alive."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            self._conn = None
            return False

    def release(self) -> None:
        """Unlock before closing: a closed connection's backend may hold the lock a moment
        longer, and the next try_acquire would find it still taken."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.name,))
            except psycopg.Error:
                pass  # the connection is gone, and the lock with it
            finally:
                self._conn.close()
                self._conn = None


@contextmanager
def held(url: str, name: str, *, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock ``name`` for the block, waiting for whoever holds it now (``waiting`` is
    called once if so). A dedicated connection: the lock is freed if the process dies."""
    with psycopg.connect(url, autocommit=True) as conn:
        (free,) = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()
        if not free:
            if waiting is not None:
                waiting()
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            yield
        finally:
            # a connection gone takes the lock with it: keep the block's own error, if any
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
