"""The Postgres job queue and the scheduler's leader lock, on the real database."""

from __future__ import annotations

import procrastinate

from aitl.leader import Leadership
from aitl.queue import build_app


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
