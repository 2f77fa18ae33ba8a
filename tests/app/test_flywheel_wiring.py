"""The flywheel as the product runs it: `aitl flywheel` and `aitl models` on the command line,
the scheduler's weekly cycle run by the worker, App Home's Promote button, and a trainable
generator whose challenger then writes one of drafts A/B."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest
from typer.testing import CliRunner

from aitl.app.cli import app
from aitl.app.cli.context import Context
from aitl.core import overrides
from flywheel import store
from flywheel.cycle import Flywheel
from flywheel.serving import LivePipeline
from rag.models import Ticket
from tests.conftest import make_settings
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.flywheel import annotate_samples, run_flywheel_worker, telling_worker
from tests.support.tiny_models import build_tiny_causal_lm


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_cli_runs_a_cycle_and_lists_the_registry(database_url, tmp_path):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path / "data")}
    ran = runner.invoke(app, ["flywheel", "run"], env=env, catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    assert "not_enough_data" in ran.output and "no feedback events" in ran.output
    listed = runner.invoke(app, ["flywheel", "runs"], env=env, catch_exceptions=False)
    assert "not_enough_data" in listed.output
    models = runner.invoke(app, ["models", "list"], env=env, catch_exceptions=False)
    assert "shipped ones are live" in models.output
    refused = runner.invoke(app, ["models", "rollback", "reranker"], env=env)
    assert refused.exit_code != 0 and "nothing to roll back" in str(refused.exception)
    exported = runner.invoke(app, ["flywheel", "export", "--out", str(tmp_path / "x")], env=env)
    assert exported.exit_code != 0 and "no feedback events" in str(exported.exception)


def test_the_scheduler_queues_the_weekly_cycle_once_and_the_worker_runs_it(settings, db):
    from aitl.app.cli.processes import scheduled_jobs

    with db.connection() as conn:
        overrides.save(conn, settings, {"retrain_cron": "15 4 * * 3"}, "UADMIN")
    ctx = SimpleNamespace(obj=Context(settings))
    ctx.obj.__dict__["db"] = db  # share the test's pool
    jobs = {name: (cron, fn) for name, cron, fn in scheduled_jobs(ctx)}
    cron, queue_cycle = jobs["retrain"]
    assert cron == "15 4 * * 3", "the admin's App Home schedule wins"
    queue_cycle()
    queue_cycle()  # a second tick while one waits adds nothing
    assert rows(
        db, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'flywheel:cycle'"
    ) == [(1,)]
    run_flywheel_worker(settings, db)
    assert rows(db, "SELECT status, trigger FROM flywheel_runs") == [
        ("not_enough_data", "schedule")
    ]


@pytest.mark.slow
def test_a_trained_generator_becomes_the_challenger_draft(kb_settings, kb_db, tmp_path):
    tiny = build_tiny_causal_lm(tmp_path / "tiny")
    settings = make_settings(
        kb_settings.database_url.get_secret_value(),
        tmp_path,
        flywheel_holdout=0.25,
        flywheel_min_examples=4,
        flywheel_max_seq_length=64,
        retriever_batch_size=8,
        gate_margin=1.0,  # keep the shipped retriever and reranker: this test is the generator's
        generation_max_new_tokens=8,
    )
    annotate_samples(settings, kb_db, variants=1)  # drafted by the extractive generator
    hf = settings.model_copy(update={"generator": "hf", "hf_model_path": tiny})
    report = Flywheel(hf, kb_db).run("test")
    assert report.status == "succeeded", report.error
    reason = report.decisions["generator"]["reason"]
    assert "no LLM judge" in reason and "drafts A/B" in reason
    [(status, path, version)] = rows(
        kb_db, "SELECT status, path, version FROM model_registry WHERE kind = 'generator'"
    )
    assert status == "challenger" and (tmp_path / "models" / "generator").exists()
    drafted = LivePipeline(hf, kb_db)().draft(Ticket("Hub", "My hub is offline"))
    roles = sorted(d.producer["role"] for d in drafted.drafts)
    assert roles == ["challenger", "champion"]
    adapters = {d.producer.get("adapter") for d in drafted.drafts}
    assert version in adapters, drafted.drafts[0].producer  # drafts name the registry version
    assert Path(path, "aitl-base.json").is_file(), "the adapter records the base it fits"

    # with a chat model configured, the LLM judge compares both generators' replies offline
    with FakeOpenAI(judge_answers) as server:
        judged = hf.model_copy(update={"judge": "llm", "openai_base_url": server.base_url})
        report = Flywheel(judged, kb_db).run("test")
    assert report.status == "succeeded", report.error
    record = report.metrics["generator"]["challenger"]
    pairwise = [r for r in server.requests if "Reply 1:" in r["messages"][-1]["content"]]
    assert record["judged"] == record["ties"] == len(pairwise) == report.counts["eval_prompts"]
    assert record["win_rate"] == 0.5
    assert "not conclusive" in report.decisions["generator"]["reason"]
    version = report.decisions["generator"]["version"]
    [(status, metrics)] = rows(
        kb_db, "SELECT status, metrics FROM model_registry WHERE version = %s", version
    )
    assert status == "challenger" and metrics["win_rate"] == 0.5


def judge_answers(body) -> Reply:
    """Every click is kept; every pair of generated replies is a tie."""
    if "compare two replies" in body["messages"][0]["content"]:
        return Reply('{"better": "tie", "reason": "equally good"}')
    return Reply('{"keep": true, "reason": "sound"}')


def test_app_home_promote_queues_the_registry_change(settings, db):
    from aitl.app.wiring import QueuedModelChanges
    from aitl.core.queue import build_deferrer

    with db.connection() as conn:
        store.add_model(conn, kind="reranker", version="r9", path="/m/r9", status="challenger")
    QueuedModelChanges(build_deferrer(db.url)).promote("reranker", "r9", "UADMIN")
    [(args,)] = rows(db, "SELECT args FROM procrastinate_jobs WHERE task_name = 'flywheel:promote'")
    assert args == {"kind": "reranker", "version": "r9", "by": "UADMIN"}
    run_flywheel_worker(settings, db)
    assert rows(db, "SELECT status, decision FROM model_registry") == [
        ("champion", "promoted by <@UADMIN> in App Home")
    ]


@pytest.mark.parametrize("earlier_attempts", [0, 3])
def test_a_model_change_that_fails_is_told_once_its_last_attempt_failed(
    settings, db, tmp_path, earlier_attempts
):
    """A failure worth retrying (here the retriever's files are gone) is retried quietly; the
    admin hears of it when the last attempt fails too, and nothing live changed."""
    from aitl.app.wiring import QueuedModelChanges
    from aitl.core.queue import build_app, build_deferrer
    from flywheel import jobs
    from flywheel.services import FlywheelServices

    with db.connection() as conn:
        store.add_model(
            conn, kind="retriever", version="r9", path=str(tmp_path / "gone"), status="challenger"
        )
    QueuedModelChanges(build_deferrer(db.url)).promote("retriever", "r9", "UADMIN")
    with db.connection() as conn:
        conn.execute("UPDATE procrastinate_jobs SET attempts = %s", (earlier_attempts,))
    told: list[tuple[str, str]] = []
    services = FlywheelServices(settings, db, tell=lambda user, text: told.append((user, text)))
    build_app(db.url, [jobs.blueprint()]).run_worker(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"flywheel": services},
    )
    [(status,)] = rows(db, "SELECT status FROM procrastinate_jobs")
    assert rows(db, "SELECT status FROM model_registry") == [("challenger",)]
    if earlier_attempts < jobs.MODEL_CHANGE_RETRIES:
        assert status == "todo" and told == [], "retried later, quietly"
        with db.connection() as conn:  # App Home says it is being retried
            assert jobs.pending_model_changes(conn) == [
                jobs.PendingChange("retriever", "r9", "promote", "UADMIN", False, failed_tries=1)
            ]
    else:
        assert status == "failed"
        [(user, text)] = told
        assert user == "UADMIN"
        assert text.startswith("Promoting retriever `r9` failed after 4 tries: ")
        assert "gone" in text, "the reason is in the message"


def test_admins_hear_how_each_cycle_the_worker_ran_ended(settings, db):
    """Nothing to learn from, another cycle in the way, a failure retried: each is said to
    every admin once, with who asked."""
    from aitl.core.leader import Leadership
    from aitl.core.queue import build_deferrer
    from flywheel import jobs
    from flywheel.cycle import RUN_LOCK

    work = telling_worker(settings, db)
    queue = build_deferrer(db.url)

    assert jobs.defer_cycle(queue, "app_home", by="UADMIN")
    [(first, note), (second, same)] = work()
    assert (first, second) == ("UADMIN", "UOTHER") and note == same
    assert note.startswith("The retrain (run 1), asked by <@UADMIN>, trained nothing: no feedback")
    assert note.endswith("The current models stay live.")

    lock = Leadership(db.url, RUN_LOCK)  # a cycle from the CLI holds it
    assert lock.try_acquire()
    try:
        assert jobs.defer_cycle(queue, "schedule")
        notes = {text for _, text in work()}
    finally:
        lock.release()
    assert notes == {
        "The weekly retrain did not start: another cycle was running (from the CLI?)."
        " The current models stay live."
    }

    # a broken database: the cycle fails once started (its runs are recorded), is retried,
    # fails again; then it cannot even record its run
    with db.connection() as conn:
        conn.execute("ALTER TABLE feedback_events RENAME TO feedback_events_gone")
    assert jobs.defer_cycle(queue, "schedule")
    notes = [text for user, text in work() if user == "UADMIN"]
    assert len(notes) == 1, "one note for the failure, not one per try"
    [(last_run,)] = rows(db, "SELECT max(id) FROM flywheel_runs WHERE status = 'failed'")
    assert notes[0].startswith(f"The weekly retrain (run {last_run}) failed: UndefinedTable:")
    assert "Nothing live changed" in notes[0]
    statuses = rows(db, "SELECT status, attempts FROM procrastinate_jobs ORDER BY id")
    assert statuses[-1] == ("failed", jobs.CYCLE_RETRIES + 1)

    with db.connection() as conn:
        conn.execute("ALTER TABLE flywheel_runs RENAME TO flywheel_runs_gone")
    assert jobs.defer_cycle(queue, "schedule")
    [note] = [text for user, text in work() if user == "UADMIN"]
    assert note.startswith("The weekly retrain failed: UndefinedTable:"), "no run to name"


def test_admins_can_hear_only_of_failures_and_whoever_asked_hears_anyway(settings, db):
    """Admins chose in App Home to hear only of failures: a week with nothing to learn from
    pings nobody; a retrain asked for in App Home is still answered to whoever asked; a failure
    reaches every admin."""
    from aitl.core.queue import build_deferrer
    from aitl.core.settings import Settings
    from flywheel import jobs
    from flywheel.services import ADMIN_NOTES

    choices = get_args(Settings.model_fields["flywheel_admin_notes"].annotation)
    assert set(choices) == set(ADMIN_NOTES), "each choice says which outcomes it tells"
    with db.connection() as conn:  # as App Home's schedule modal saves it
        overrides.save(conn, settings, {"flywheel_admin_notes": "failures"}, "UADMIN")
    work = telling_worker(settings, db)
    queue = build_deferrer(db.url)
    assert jobs.defer_cycle(queue, "schedule")
    assert work() == []
    assert rows(db, "SELECT status FROM flywheel_runs") == [("not_enough_data",)], "it ran"

    assert jobs.defer_cycle(queue, "app_home", by="UASKER")  # an admin since removed, say
    [(user, note)] = work()
    assert user == "UASKER" and "asked by <@UASKER>, trained nothing" in note

    with db.connection() as conn:
        conn.execute("ALTER TABLE feedback_events RENAME TO feedback_events_gone")
    assert jobs.defer_cycle(queue, "schedule")
    told = work()
    assert sorted(user for user, _ in told) == ["UADMIN", "UOTHER"]
    assert all(" failed: UndefinedTable:" in note for _, note in told)


def test_a_cycle_note_says_what_goes_live_and_why():
    from flywheel.reports import cycle_note

    note = cycle_note(
        run_id=12,
        trigger="schedule",
        status="succeeded",
        seconds=581.0,
        decisions={
            "reranker": {"promoted": False, "reason": "precision@8 0.17 → 0.17 (needs +0.005)"},
            "retriever": {"promoted": True, "reason": "recall@75 0.50 → 0.76"},
        },
    )
    assert note.splitlines() == [
        "The weekly retrain (run 12) finished in 10 min: 1 model promoted, serving the next"
        " drafts.",
        "• retriever: promoted (recall@75 0.50 → 0.76)",
        "• reranker: kept the current model (precision@8 0.17 → 0.17 (needs +0.005))",
    ]
