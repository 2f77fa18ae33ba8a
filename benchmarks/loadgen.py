"""The load side shared by the loopback benchmarks (Slack clicks, Zendesk webhooks).

The product runs as its own processes (``aitl web --workers N``, ``aitl worker``) started
here; the benchmark's process is the second process on loopback that sends the load. A
sender retries as Slack and Zendesk do (no answer or a 5xx is retried, re-signed), so a
web worker killed mid-run must cost retries, never a lost or doubled event. Also here:
percentiles, the result table with PASS/MISS per goal, and the JSON under ``results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from sandboxes.slack.state import BOT_TOKEN, SIGNING_SECRET

console = Console()
RESULTS_DIR = Path(__file__).resolve().parent / "results"
AITL = str(Path(sys.executable).with_name("aitl"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency_figures(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"ack_p50_ms": None, "ack_p99_ms": None, "ack_max_ms": None}
    return {
        "ack_p50_ms": round(percentile(latencies, 50), 1),
        "ack_p99_ms": round(percentile(latencies, 99), 1),
        "ack_max_ms": round(max(latencies), 1),
    }


def run_figures(tally: Tally, args: argparse.Namespace, cpu: dict[str, float]) -> dict:
    """What every load run reports beside its own counts: latency, slow acks, statuses, CPU
    and the load's shape (args of ``add_load_arguments``, and ``--concurrency``)."""
    return {
        **latency_figures(tally.latencies),
        **slow_figures(tally),
        "statuses": dict(sorted(tally.statuses.items())),
        "cpu_s": cpu,
        "concurrency": args.concurrency,
        "rate_target": args.rate,
        "web_workers": args.workers,
    }


def add_load_arguments(parser: argparse.ArgumentParser, restart_help: str) -> None:
    """--workers, --rate and --restart, which every load benchmark takes."""
    parser.add_argument("--workers", type=int, default=2, help="aitl web --workers")
    parser.add_argument(
        "--rate", type=float, default=None, help="per second, spread evenly (default: flat out)"
    )
    parser.add_argument("--restart", action="store_true", help=restart_help)


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.restart and args.workers < 2:
        parser.error("--restart needs --workers 2 or more (one is killed, the others serve)")


def slow_figures(tally: Tally) -> dict:
    """How many acks took over SLOW_MS, and when in the run the slowest ones were sent."""
    slowest = sorted(tally.slow, key=lambda pair: -pair[1])[:5]
    return {
        f"acks_over_{SLOW_MS:.0f}_ms": len(tally.slow),
        "slowest_acks_s_ms": sorted(slowest),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slack_env(data_dir: Path, slack_api: str) -> dict[str, str]:
    """The environment of product processes that talk to the local Slack at ``slack_api``."""
    return {
        "AITL_DATA_DIR": str(data_dir),
        "AITL_SLACK_BOT_TOKEN": BOT_TOKEN,
        "AITL_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "AITL_SLACK_API_URL": f"{slack_api}/api/",
    }


def settings_kwargs(env: dict[str, str]) -> dict[str, str]:
    """The ``AITL_*`` variables given to the product processes, as Settings keywords."""
    return {k.removeprefix("AITL_").lower(): v for k, v in env.items() if k.startswith("AITL_")}


# --- the product's processes ----------------------------------------------------------------


@dataclass
class WebApp:
    url: str
    process: psutil.Process
    workers: int

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (spawned children), not its resource tracker."""
        if self.workers == 1:
            return [self.process.pid]
        return [
            child.pid
            for child in self.process.children()
            if "resource_tracker" not in " ".join(_cmdline(child))
        ]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@contextlib.contextmanager
def web_app(env: dict[str, str], workers: int, port: int | None = None) -> Iterator[WebApp]:
    """``aitl web --workers N`` as the Procfile runs it, on a free port, until healthy."""
    port = port or free_port()
    command = [AITL, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=env.get("AITL_DATA_DIR"),  # no developer .env leaks in
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        app = WebApp(url, psutil.Process(process.pid), workers)
        _wait_for(lambda: len(app.worker_pids()) == workers, 60, "uvicorn's workers")
        yield app
    finally:
        process.terminate()
        process.wait(20)


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"aitl web exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit("aitl web did not become healthy")


def _wait_for(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


class QueueWorker:
    """``aitl worker`` as the Procfile runs it; can be killed (SIGKILL) and started again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.process: subprocess.Popen | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [AITL, "worker"],
                env=self.env,
                cwd=self.env.get("AITL_DATA_DIR"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pids.append(self.process.pid)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def show_tail(log: Path, title: str, lines: int = 30) -> None:
    """The end of a product process's log, when a run went wrong and the data dir goes away."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    console.rule(title)
    console.print("\n".join(text[-lines:]), markup=False, highlight=False)


def cpu_seconds(processes: list[psutil.Process]) -> dict[str, float]:
    """CPU seconds so far: the given product processes (with their children, live or reaped),
    PostgreSQL, and this process."""

    def used(process: psutil.Process, reaped: bool = False) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        total = times.user + times.system
        # a killed uvicorn worker, once its supervisor reaped it, counts here
        return total + (times.children_user + times.children_system if reaped else 0.0)

    product = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            product += used(process, reaped=True)
            product += sum(used(child) for child in process.children(recursive=True))
    postgres = [
        p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")
    ]
    return {
        "product": product,
        "postgres": sum(used(p) for p in postgres),
        "load generator": time.process_time(),
    }


# --- the loopback client ----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; a bare client keeps the generator's CPU small."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, headers: dict[str, str], body: bytes, timeout_s: float) -> int:
        """The status code; raises OSError/TimeoutError when no answer came."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"POST {self.path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            return await asyncio.wait_for(self._answer(), timeout_s)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
            self.close()
            raise ConnectionResetError("no answer") from None

    async def _answer(self) -> int:
        assert self.reader is not None
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            while size := int((await self.reader.readline()).strip() or b"0", 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass(frozen=True)
class RetryPolicy:
    """How the real sender retries: which answers, how often, after how long."""

    retries: int
    timeout_s: float
    backoff_s: float
    retry_statuses: frozenset[int] = frozenset()

    def retryable(self, status: int | None) -> bool:
        return status is None or status >= 500 or status in self.retry_statuses


SLOW_MS = 200.0  # acks slower than this are listed with when they were sent

# a request's headers for its attempt n (0 = first), given why the previous attempt failed
Signer = Callable[[int, str | None], dict[str, str]]


@dataclass
class Tally:
    """What the sender saw, over every request of the run."""

    latencies: list[float] = field(default_factory=list)  # ms of answered 2xx attempts
    slow: list[tuple[float, float]] = field(default_factory=list)  # (s into the run, ms) > 200
    began: float = field(default_factory=time.perf_counter)
    statuses: Counter = field(default_factory=Counter)  # every attempt's answer (0 = none)
    sent: int = 0  # deliveries (a retry is the same delivery)
    acked: int = 0  # deliveries that got a 2xx in the end
    retried: int = 0  # attempts after the first
    done: int = 0  # deliveries finished, acknowledged or not
    pending: set[asyncio.Future] = field(default_factory=set)  # retries sent on their own


async def deliver(
    conn: Connection,
    signer: Signer,
    body: bytes,
    policy: RetryPolicy,
    tally: Tally,
    *,
    detach: bool = False,
    on_done: Callable[[int | None], None] | None = None,
) -> None:
    """Send one delivery until it is acknowledged or the retries run out; ``on_done`` gets its
    last status (None: no answer).

    Without ``detach`` the retries happen here, before the caller's next delivery (the clicks
    of one Slack slot stay in order); with it they run on their own connection while the
    caller goes on, as Zendesk's sender does.
    """
    tally.sent += 1
    status, reason = await _attempt(conn, signer, body, policy, tally, 0, None)
    if not _again(status, policy):
        _finished(tally, status, on_done)
        return
    retries = _retries(conn, signer, body, policy, tally, (status, reason), detach, on_done)
    if not detach:
        await retries
        return
    task = asyncio.ensure_future(retries)
    tally.pending.add(task)


async def _retries(conn, signer, body, policy, tally, last, detach, on_done) -> None:
    own = Connection(conn.url) if detach else conn
    status, reason = last
    for attempt in range(1, policy.retries + 1):
        tally.retried += 1
        await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
        status, reason = await _attempt(own, signer, body, policy, tally, attempt, reason)
        if not _again(status, policy):
            break
    if detach:
        own.close()
    _finished(tally, status, on_done)


async def _attempt(conn, signer, body, policy, tally, attempt, reason):
    started = time.perf_counter()
    try:
        status = await conn.post(signer(attempt, reason), body, policy.timeout_s)
    except OSError:
        tally.statuses[0] += 1
        return None, "http_timeout"
    tally.statuses[status] += 1
    if 200 <= status < 300:
        ms = (time.perf_counter() - started) * 1000
        tally.latencies.append(ms)
        if ms > SLOW_MS:
            tally.slow.append((round(started - tally.began, 2), round(ms, 1)))
    return status, "http_error"


def _again(status: int | None, policy: RetryPolicy) -> bool:
    return (status is None or not 200 <= status < 300) and policy.retryable(status)


def _finished(tally: Tally, status: int | None, on_done) -> None:
    tally.done += 1
    if status is not None and 200 <= status < 300:
        tally.acked += 1
    if on_done is not None:
        on_done(status)


# --- one worker restart mid-run -------------------------------------------------------------


@dataclass
class Disruption:
    """Kill one web worker and restart the queue worker once the load reaches given shares."""

    web: WebApp
    queue_worker: QueueWorker | None
    total: int
    web_kill_at: float = 0.33
    queue_restart_at: float = 0.5
    busy: Callable[[], int] | None = None  # jobs running now; the kill waits for one (≤ 10 s)
    log: list[dict] = field(default_factory=list)

    async def run(self, tally: Tally) -> None:
        steps: list[tuple[float, Callable[[], dict]]] = [(self.web_kill_at, self.kill_web_worker)]
        if self.queue_worker is not None:
            steps.append((self.queue_restart_at, self.restart_queue_worker))
        await asyncio.gather(*(self._when(share, step, tally) for share, step in steps))
        self.log.sort(key=lambda entry: entry["at_s"])

    async def _when(self, share: float, step: Callable[[], dict], tally: Tally) -> None:
        while tally.done < share * self.total:
            await asyncio.sleep(0.01)
        at = {"at_delivery": tally.done, "at_s": round(time.perf_counter() - tally.began, 2)}
        self.log.append(at | await asyncio.get_running_loop().run_in_executor(None, step))

    def kill_web_worker(self, watch_s: float = 10.0) -> dict:
        """SIGKILL one uvicorn worker, then watch the worker pids for ``watch_s``: uvicorn's
        supervisor should replace that one worker and leave the others alone."""
        before = self.web.worker_pids()
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        seen, gone, replaced_after = set(before), {victim}, None
        while time.monotonic() - started < watch_s:
            now = self.web.worker_pids()
            gone |= seen - set(now)
            seen |= set(now)
            if replaced_after is None and victim not in now and len(now) == len(before):
                replaced_after = round(time.monotonic() - started, 2)
            time.sleep(0.05)
        return {
            "step": "SIGKILL web worker",
            "pid": victim,
            "replaced_after_s": replaced_after,
            "workers_gone": sorted(gone),  # more than the victim: the supervisor killed others
            "workers_started": sorted(seen - set(before)),
        }

    def restart_queue_worker(self) -> dict:
        assert self.queue_worker is not None and self.queue_worker.process is not None
        killed, running = self.queue_worker.process.pid, None
        if self.busy is not None:  # kill it mid-job, as a crash would
            deadline = time.monotonic() + 10
            while (running := self.busy()) == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        self.queue_worker.restart()
        return {
            "step": "SIGKILL + start aitl worker",
            "pid": killed,
            "jobs_running_at_kill": running,
            "new_pid": self.queue_worker.process.pid,
        }


async def run_load(
    lanes: list[list[Callable[[Connection, Tally], Awaitable[None]]]],
    url: str,
    tally: Tally,
    disruption: Disruption | None = None,
    rate: float | None = None,
) -> tuple[float, float]:
    """One keep-alive connection per lane, sending its jobs in order; the run's start and end.

    A lane finishes a delivery (its in-order retries included) before its next one, as one
    sender would. Without ``rate`` the lanes send as fast as the app answers; with it the
    deliveries are spread over the lanes at that many per second (a lane running late sends
    at once).
    """

    async def connection(index: int, lane) -> None:
        conn = Connection(url)
        for k, job in enumerate(lane):
            if rate:
                due = began + (k * len(lanes) + index) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await job(conn, tally)
        conn.close()

    began = tally.began = time.perf_counter()
    chaos = asyncio.ensure_future(disruption.run(tally)) if disruption else None
    await asyncio.gather(*(connection(i, lane) for i, lane in enumerate(lanes)))
    while tally.pending:  # retries still waiting for their turn
        await asyncio.gather(*list(tally.pending))
        tally.pending = {task for task in tally.pending if not task.done()}
    ended = time.perf_counter()
    if chaos is not None:
        await chaos
    return began, ended


# --- the report -------------------------------------------------------------------------------


def report(title: str, figures: dict, verdicts: dict[str, bool], name: str) -> Path:
    """A table, a PASS/MISS line per goal, and ``results/<name>.json``; never fails the run."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)
    for goal, ok in verdicts.items():
        console.print(f"{'[green]PASS' if ok else '[bold red]MISS'}[/] {goal}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"figures": figures, "goals": verdicts}, indent=2, default=str))
    return path
