"""Slack click figures: sustained signed button clicks per second into the running web app,
ack latency p50/p99, and events stored against clicks acknowledged (zero lost, zero extra).

The web app (real Bolt app, real embedded PostgreSQL) and the local Slack API server run in
this process; the load comes from a second process over loopback, as Slack's would. Every
click is a distinct answer (each agent flips its preference on a card), so each acknowledged
click must be exactly one stored event. Usage:
``.venv/bin/python benchmarks/slack_clicks.py [--clicks 6000] [--concurrency 32] [--cards 60]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import asyncio
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aitl.bootstrap import open_database
from aitl.servers import serve_in_thread
from aitl.settings import Settings
from aitl.web import create_app
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
from tests.support.drafts import draft_set

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
            set_id, drafts = draft_set(conn, ticket_ref=f"zendesk:{number + 1}")
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


# --- the load: a second process -------------------------------------------------------------


def load(url: str, slots: list[list[bytes]], clicks: int, concurrency: int, out) -> None:
    """Each worker owns its slots and clicks them in turn, so no slot has two clicks in flight."""
    import httpx
    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(SIGNING_SECRET)

    async def worker(index: int, client: httpx.AsyncClient, quota: int, results: list) -> None:
        mine = slots[index::concurrency]
        for n in range(quota):
            slot = mine[n % len(mine)]
            turn = n // len(mine)
            body = slot[turn % len(VALUES)]
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": verifier.generate_signature(timestamp=stamp, body=body),
            }
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            results.append((status, (time.perf_counter() - started) * 1000, time.perf_counter()))

    async def run() -> tuple[list, float, float]:
        results: list = []
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            quotas = [
                clicks // concurrency + (i < clicks % concurrency) for i in range(concurrency)
            ]
            began = time.perf_counter()
            await asyncio.gather(*(worker(i, client, q, results) for i, q in enumerate(quotas)))
            return results, began, time.perf_counter()

    out.send(asyncio.run(run()))
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cards", type=int, default=60)
    parser.add_argument("--agents", type=int, default=4)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-slack-bench-"))
    slack = SlackSandbox()
    agents = [f"U0BENCH{i:03d}" for i in range(args.agents)]
    for agent in agents:
        slack.add_user(agent, agent.lower())
    slack.add_usergroup("S0BENCH", "bench-agents", agents)
    try:
        with serve(slack):
            settings = Settings(
                _env_file=None,
                data_dir=data_dir,
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url=f"{slack.base_url}/api/",
                slack_agents_usergroup="S0BENCH",
            )
            db = open_database(settings)
            stamps = make_cards(db, slack, args.cards)
            slots = slot_bodies(slack, stamps, agents)
            with serve_in_thread(create_app(settings, database=db)) as web:
                url = f"{web.url}/slack/events"
                _warm_up(url, slots)
                before = _count(db)
                results, began, ended = _run_load(url, slots, args)
                time.sleep(0.5)
                stored = _count(db) - before
            report(args, results, began, ended, stored, _jobs(db))
            db.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _warm_up(url: str, slots: list[list[bytes]]) -> None:
    """One click per value on a spare slot: auth.test and membership get cached, pools fill."""
    import httpx
    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(SIGNING_SECRET)
    spare = slots.pop()
    for body in spare:
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": verifier.generate_signature(timestamp=stamp, body=body),
        }
        httpx.post(url, content=body, headers=headers, timeout=10).raise_for_status()


def _run_load(url, slots, args):
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=load, args=(url, slots, args.clicks, args.concurrency, send), daemon=True
    )
    process.start()
    results, began, ended = receive.recv()
    process.join(30)
    return results, began, ended


def _count(db) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0]


def _jobs(db) -> int:
    with db.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'bot:refresh_card'"
        ).fetchone()[0]


def report(args, results, began, ended, stored, refresh_jobs) -> None:
    latencies = [ms for status, ms, _ in results if status == 200]
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
        "concurrency": args.concurrency,
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
