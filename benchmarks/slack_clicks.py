"""Slack click figures: sustained signed button clicks per second into the running web app,
ack latency p50/p99, and events stored against clicks acknowledged (zero lost, zero extra).

`aitl web --workers N` (the real Bolt app on the embedded PostgreSQL) runs in its own
processes; this process holds the local Slack API server and sends the clicks over loopback
on keep-alive connections, signed as Slack signs them. Every
click is a distinct answer (each agent flips its preference on a card), so each acknowledged
click must be exactly one stored event. Usage:
``.venv/bin/python benchmarks/slack_clicks.py [--clicks 6000] [--concurrency 32] [--workers 2]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aitl.bootstrap import open_database
from aitl.settings import Settings
from bot import card as card_blocks
from bot import store as bot_store
from bot.sandbox import SlackSandbox, serve
from bot.sandbox_state import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
    encode_interactivity,
)
from rag import store as rag_store
from rag.models import Draft, DraftSet, Ticket

console = Console()
RESULTS = Path(__file__).resolve().parent / "results" / "slack_clicks.json"
VALUES = ("A", "B", "tie", "both_bad")
GOALS = {"clicks_per_s": 300.0, "p99_ms": 200.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_cards(db, slack: SlackSandbox, count: int) -> list[str]:
    """Draft sets with their cards shown in #support; returns the card messages' ts."""
    stamps = []
    with db.connection() as conn:
        for number in range(count):
            set_id = rag_store.save_draft_set(conn, f"zendesk:{number + 1}", "q", _drafted())
            drafts = {d.label: d.id for d in rag_store.drafts_of_set(conn, set_id)}
            card = bot_store.ensure_card(
                conn,
                handoff_key=f"bench:{number}",
                kind="ticket",
                draft_set_id=set_id,
                ticket_ref=f"zendesk:{number + 1}",
                drafts=drafts,
                header={"number": number + 1, "subject": "Benchmark"},
                channel=SUPPORT_CHANNEL,
            )
            drafts_shown = rag_store.drafts_of_set(conn, set_id)
            content = card_blocks.CardContent(set_id, "ticket", card.header, drafts_shown, [], [])
            blocks, text = card_blocks.card_blocks(content)
            channel, message = slack.post_message(
                SUPPORT_CHANNEL, text=text, blocks=card_blocks.as_dicts(blocks)
            )
            bot_store.mark_shown(conn, card.id, channel, message["ts"])
            stamps.append(message["ts"])
    return stamps


def _drafted() -> DraftSet:
    ticket = Ticket(subject="Benchmark", body="How do I reset my hub?")
    texts = ("Hold the reset button for ten seconds.", "Unplug the hub, wait, plug it back.")
    pairs = zip("AB", texts, strict=True)
    drafts = tuple(Draft(label, text, (), {"variant": "bench"}) for label, text in pairs)
    return DraftSet(ticket, (), (), drafts, {})


def slot_bodies(slack: SlackSandbox, stamps: list[str], agents: list[str]) -> list[list[bytes]]:
    """Per slot (card × agent), one form body per preference value, as Slack would send."""
    slots = []
    for ts in stamps:
        for agent in agents:
            bodies = []
            for value in VALUES:
                payload = slack.block_actions(agent, SUPPORT_CHANNEL, ts, f"aitl.prefer.{value}")
                bodies.append(encode_interactivity(payload))
            slots.append(bodies)
    return slots


# --- the load: this process, against the web app's own process(es) -------------------------


async def _click(reader, writer, target: str, body: bytes, verifier) -> int:
    """One keep-alive HTTP/1.1 POST; a bare client keeps the load generator's CPU small."""
    stamp = str(int(time.time()))
    head = (
        f"POST {target} HTTP/1.1\r\nHost: bench\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {stamp}\r\n"
        f"X-Slack-Signature: {verifier.generate_signature(timestamp=stamp, body=body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def load(url: str, slots: list[list[bytes]], clicks: int, concurrency: int):
    """Each connection owns its slots and clicks them in turn: no slot has two clicks in flight."""
    from urllib.parse import urlsplit

    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(SIGNING_SECRET)
    parts = urlsplit(url)
    results: list[tuple[int, float]] = []

    async def connection(index: int, quota: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        mine = slots[index::concurrency]
        for n in range(quota):
            body = mine[n % len(mine)][(n // len(mine)) % len(VALUES)]
            started = time.perf_counter()
            try:
                status = await _click(reader, writer, parts.path, body, verifier)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            results.append((status, (time.perf_counter() - started) * 1000))
        writer.close()

    share, extra = divmod(clicks, concurrency)
    began = time.perf_counter()
    await asyncio.gather(*(connection(i, share + (i < extra)) for i in range(concurrency)))
    return results, began, time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cards", type=int, default=60)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="aitl web --workers")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-slack-bench-"))
    slack = SlackSandbox()
    agents = [f"U0BENCH{i:03d}" for i in range(args.agents)]
    for agent in agents:
        slack.add_user(agent, agent.lower())
    slack.add_usergroup("S0BENCH", "bench-agents", agents)
    try:
        with serve(slack):
            env = {
                "AITL_DATA_DIR": str(data_dir),
                "AITL_SLACK_BOT_TOKEN": BOT_TOKEN,
                "AITL_SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "AITL_SLACK_API_URL": f"{slack.base_url}/api/",
                "AITL_SLACK_AGENTS_USERGROUP": "S0BENCH",
            }
            db = open_database(Settings(_env_file=None, **_settings(env)))
            stamps = make_cards(db, slack, args.cards)
            slots = slot_bodies(slack, stamps, agents)
            env["DATABASE_URL"] = db.url
            with web_processes(env, args.workers) as (url, web):
                _warm_up(url, slots, args.workers)
                before, cpu_before = _count(db), _cpu(web)
                results, began, ended = asyncio.run(load(url, slots, args.clicks, args.concurrency))
                cpu = {k: round(v - cpu_before[k], 1) for k, v in _cpu(web).items()}
                time.sleep(0.5)
                stored = _count(db) - before
            report(args, results, began, ended, stored, _jobs(db), cpu)
            db.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _settings(env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("AITL_").lower(): v for k, v in env.items() if k.startswith("AITL_")}


@contextlib.contextmanager
def web_processes(env: dict[str, str], workers: int):
    """``aitl web --workers N`` as the Procfile runs it, on a free port."""
    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("aitl")), "web", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield f"{url}/slack/events", psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(20)


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"aitl web exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("aitl web did not become healthy")


def _warm_up(url: str, slots: list[list[bytes]], workers: int) -> None:
    """Clicks on spare slots until every worker process has its caches and pools filled."""
    spare = [slots.pop() for _ in range(workers * 2)]
    bodies = [body for slot in spare for body in slot]
    results, _, _ = asyncio.run(load(url, [[b] for b in bodies], len(bodies), workers * 2))
    if any(status != 200 for status, _ in results):
        raise SystemExit(f"warm-up clicks failed: {results}")


def _count(db) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0]


def _jobs(db) -> int:
    with db.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'bot:refresh_card'"
        ).fetchone()[0]


def _cpu(web) -> dict[str, float]:
    """CPU seconds so far: the web processes, PostgreSQL, and this load generator."""
    import psutil

    def used(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    web_cpu = sum(used(p) for p in [web, *web.children(recursive=True)])
    postgres = [
        p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")
    ]
    return {
        "web": web_cpu,
        "postgres": sum(used(p) for p in postgres if p.is_running()),
        "load generator": time.process_time(),
    }


def report(args, results, began, ended, stored, refresh_jobs, cpu) -> None:
    latencies = [ms for status, ms in results if status == 200]
    acked = len(latencies)
    failed = len(results) - acked
    seconds = ended - began
    figures = {
        "clicks_sent": len(results),
        "acked_200": acked,
        "not_acked": failed,
        "events_stored": stored,
        "lost": max(0, acked - stored),
        "duplicated": max(0, stored - acked),
        "refresh_jobs_queued": refresh_jobs,
        "seconds": round(seconds, 2),
        "clicks_per_s": round(len(results) / seconds, 1),
        "ack_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "ack_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "ack_max_ms": round(max(latencies), 1) if latencies else None,
        "statuses": dict(sorted(Counter(status for status, _ in results).items())),
        "cpu_s": cpu,
        "concurrency": args.concurrency,
        "web_workers": args.workers,
        "cards": args.cards,
        "agents": args.agents,
    }
    table = Table(title="Slack clicks → /slack/events (loopback, second process)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)
    verdicts = {
        "clicks_per_s >= 300": figures["clicks_per_s"] >= GOALS["clicks_per_s"],
        "ack p99 <= 200 ms": (figures["ack_p99_ms"] or 1e9) <= GOALS["p99_ms"],
        "zero lost": figures["lost"] == 0 and failed == 0,
        "zero duplicated": figures["duplicated"] == 0,
    }
    for goal, ok in verdicts.items():
        console.print(f"{'[green]PASS' if ok else '[bold red]MISS'}[/] {goal}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures, "goals": verdicts}, indent=2))


if __name__ == "__main__":
    main()
