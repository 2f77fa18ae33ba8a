"""The scheduler's jobs follow the schedules an admin edits in App Home while it runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from aitl.app.cli.context import Context
from aitl.app.cli.processes import _follow_admin_changes, scheduled_jobs
from aitl.app.schedule import Schedule
from aitl.core import overrides
from aitl.core.crontab import next_run
from tests.conftest import make_settings


def test_a_changed_cron_reschedules_only_that_job():
    fired: list[str] = []
    schedule = Schedule(
        {"retrain": lambda: fired.append("retrain"), "kb_sync": lambda: fired.append("kb")},
        {"retrain": "0 2 * * 1", "kb_sync": "0 * * * *"},
    )
    schedule.start()
    try:
        before = schedule.next_runs()
        assert schedule.sync({"retrain": "0 2 * * 1", "kb_sync": "0 * * * *"}) == {}
        assert schedule.sync({"retrain": "30 5 * * 3", "unknown": "* * * * *"}) == {
            "retrain": "30 5 * * 3"
        }
        after = schedule.next_runs()
        assert after["kb_sync"] == before["kb_sync"]
        fires = after["retrain"]
        assert (fires.strftime("%A"), fires.hour, fires.minute) == ("Wednesday", 5, 30)
    finally:
        schedule.pause()
    assert not schedule.running and fired == []


def test_the_running_scheduler_picks_up_an_app_home_change(settings, db):
    ctx = SimpleNamespace(obj=Context(settings))
    ctx.obj.__dict__["db"] = db  # share the test's pool
    found = scheduled_jobs(ctx)
    schedule = Schedule({j: fn for j, _, fn in found}, {j: cron for j, cron, _ in found})
    schedule.start()
    try:
        _follow_admin_changes(ctx, schedule)
        assert schedule.crons["retrain"] == settings.retrain_cron
        with db.connection() as conn:
            overrides.save(conn, settings, {"retrain_cron": "15 4 * * 3"}, "UADMIN")
        _follow_admin_changes(ctx, schedule)
        assert schedule.crons["retrain"] == "15 4 * * 3"
        fires = schedule.next_runs()["retrain"]
        assert (fires.strftime("%A"), fires.hour, fires.minute) == ("Wednesday", 4, 15)
    finally:
        schedule.pause()


@pytest.mark.parametrize(
    ("cron", "weekdays"),
    [
        ("0 2 * * 1", {"Monday"}),
        ("0 2 * * 0", {"Sunday"}),
        ("0 2 * * 7", {"Sunday"}),
        ("0 2 * * 1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("0 2 * * 5-7", {"Friday", "Saturday", "Sunday"}),
        ("0 2 * * */2", {"Sunday", "Tuesday", "Thursday", "Saturday"}),
        ("0 2 * * mon,3", {"Monday", "Wednesday"}),
        ("0 2 * * fri-sun", {"Friday", "Saturday", "Sunday"}),
    ],
)
def test_weekdays_are_numbered_as_in_every_crontab(cron, weekdays):
    start = datetime(2026, 11, 22, tzinfo=UTC)  # a Sunday
    fires, at = set(), start
    for _ in range(len(weekdays) + 7):
        at = next_run(cron, at + timedelta(seconds=1))
        if at - start > timedelta(days=7):
            break
        fires.add(at.strftime("%A"))
        assert at.hour == 2 and at.minute == 0
    assert fires == weekdays


@pytest.mark.parametrize(
    "cron", ["0 2 * *", "0 2 * * 8", "0 2 * * 5-2", "0 2 * * x", "0 2 * * */0"]
)
def test_a_bad_crontab_is_refused_with_a_reason(cron, tmp_path):
    with pytest.raises(ValueError) as info:
        make_settings("postgresql://unused/x", tmp_path, retrain_cron=cron)
    assert "not a crontab expression" in str(info.value)
