"""SIGTERM, as a process manager, ``kill`` or a container stop sends it, stops a long-running
``aitl`` command the way Ctrl-C does: on the way out it stops what it started."""

from __future__ import annotations

import psutil
import pytest

from tests.support.processes import start

pytestmark = pytest.mark.slow


def test_sigterm_stops_the_demo_and_the_worker_and_scheduler_it_started(settings, tmp_path):
    demo = start(
        "demo",
        ["demo", "--tickets", "2", "--agents", "1", "--port", "0"],
        settings,
        tmp_path / "run",
        COLUMNS="200",  # rich would wrap the line waited for at 80 columns
    )
    children: list[psutil.Process] = []
    try:
        demo.wait_for_output("Ctrl-C stops everything", 600, "the demo to serve its page")
        children = psutil.Process(demo.pid).children(recursive=True)
        started = sorted(child.cmdline()[-1] for child in children)
        assert started == ["scheduler", "worker"]

        demo.stop(timeout=60)

        assert demo.popen.returncode == 0, demo.fail("did not stop cleanly on SIGTERM")
        assert "stopping" in demo.log()
        _, left = psutil.wait_procs(children, timeout=30)
        assert not left, f"still running after the demo stopped: {left}"
    finally:
        demo.kill()
        for child in children:
            if child.is_running():
                child.kill()


def test_sigterm_stops_the_scheduler_as_ctrl_c_does(settings, tmp_path):
    scheduler = start("scheduler", ["scheduler"], settings, tmp_path / "run")
    try:
        scheduler.wait_for_output("scheduler: leading", 120, "the scheduler to lead")

        scheduler.stop(timeout=30)

        assert scheduler.popen.returncode == 0, scheduler.fail("was killed by SIGTERM")
    finally:
        scheduler.kill()
