"""The Postgres job queue and the scheduler's leader lock, on the real database."""

from __future__ import annotations

import procrastinate

from aitl.core.leader import Leadership
from aitl.core.queue import build_app


def test_deferred_job_runs_once_in_a_worker(db, tmp_path):
    blueprint = procrastinate.Blueprint()
    marker = tmp_path / "ran.txt"

    @blueprint.task(name="append")
    def append(text: str) -> None:
        with marker.open("a") as out:
            out.write(text + "\n")

    app = build_app(db.url, [blueprint])
    with app.open():
        app.tasks["aitl:append"].configure(queueing_lock="only-one").defer(text="hello")
        app.run_worker(wait=False, install_signal_handlers=False, listen_notify=False)
    assert marker.read_text() == "hello\n"
    with db.connection() as conn:
        statuses = conn.execute("SELECT status FROM procrastinate_jobs").fetchall()
    assert statuses == [("succeeded",)]


def test_only_one_scheduler_leads_until_it_lets_go(db):
    first, second = Leadership(db.url), Leadership(db.url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.holds() and not second.holds()
        first.release()
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


def test_a_held_lock_whose_connection_died_keeps_the_blocks_own_error(db):
    """A model change that fails after the database dropped its lock connection reports its
    own failure, not the unlock's; and the lock is free for the next change."""
    import pytest

    from aitl.core.leader import held

    with (
        pytest.raises(RuntimeError, match="the change itself failed"),
        held(db.url, "aitl.test.change"),
    ):
        with db.connection() as conn:  # e.g. a failover, or an admin ending the session
            (ended,) = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
        assert ended == 1
        raise RuntimeError("the change itself failed")
    with held(db.url, "aitl.test.change"):
        pass
