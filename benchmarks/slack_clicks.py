"""Slack click figures: sustained signed button clicks per second into the running web app,
ack latency p50/p99, and events stored against clicks acknowledged (zero lost, zero extra).

`aitl web --workers N` (the real Bolt app on the embedded PostgreSQL) runs in its own
processes; this process holds the local Slack API server and sends the clicks over loopback
on keep-alive connections, signed as Slack signs them, retried as Slack retries them. Every
click is a distinct answer (each agent flips its preference on a card), so each acknowledged
click must be exactly one stored event. With ``--restart`` one web worker is killed (SIGKILL)
and the queue worker (``aitl worker``) is killed and started again mid-run. Usage:
``.venv/bin/python benchmarks/slack_clicks.py [--clicks 6000] [--concurrency 32] [--workers 2]
[--restart]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from slack_sdk.signature import SignatureVerifier

from aitl.core.bootstrap import open_database
from aitl.core.settings import Settings
from benchmarks import loadgen
from bot import card_views as card_blocks
from bot import store as bot_store
from rag import store as rag_store
from rag.models import Draft, DraftSet, Ticket
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import (
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
    encode_interactivity,
)

VALUES = ("A", "B", "tie", "both_bad")
GOALS = {"clicks_per_s": 300.0, "p99_ms": 200.0}
# Slack retries a request it got no 200 for within 3 s up to 3 times (much later than here)
SLACK_RETRIES = loadgen.RetryPolicy(retries=3, timeout_s=3.0, backoff_s=0.2)
REFRESH = "bot:refresh_card"


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


def slot_payloads(slack: SlackSandbox, stamps: list[str], agents: list[str]) -> list[list[dict]]:
    """Per slot (card × agent), one payload per preference value, as Slack would send it."""
    slots = []
    for ts in stamps:
        for agent in agents:
            slots.append(
                [
                    slack.block_actions(agent, SUPPORT_CHANNEL, ts, f"aitl.prefer.{value}")
                    for value in VALUES
                ]
            )
    return slots


# --- the load: this process, against the web app's own process(es) -------------------------


def click_lanes(slots: list[list[dict]], clicks: int, concurrency: int):
    """Each connection owns its slots and clicks them in turn: no slot has two clicks in flight,
    so a retried click can only repeat the slot's current answer (which stores nothing).

    Every click is a new click, with its own ``action_ts`` as Slack stamps it (the product
    takes a repeated ``action_ts`` for a retry of the same click); bodies are built here,
    before the clock starts.
    """
    verifier = SignatureVerifier(SIGNING_SECRET)
    share, extra = divmod(clicks, concurrency)
    stamps = itertools.count(int(time.time() * 1e6))
    lanes = []
    for index in range(concurrency):
        mine = slots[index::concurrency]
        quota = share + (index < extra)
        payloads = [mine[n % len(mine)][(n // len(mine)) % len(VALUES)] for n in range(quota)]
        lanes.append([_click(_body(p, next(stamps)), verifier) for p in payloads])
    return lanes


def _body(payload: dict, stamp_us: int) -> bytes:
    action = payload["actions"][0] | {"action_ts": f"{stamp_us / 1e6:.6f}"}
    return encode_interactivity(payload | {"actions": [action]})


def _click(body: bytes, verifier: SignatureVerifier):
    def signer(attempt: int, reason: str | None) -> dict[str, str]:
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": verifier.generate_signature(timestamp=stamp, body=body),
        }
        if attempt:
            headers |= {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason or ""}
        return headers

    async def job(conn: loadgen.Connection, tally: loadgen.Tally) -> None:
        await loadgen.deliver(conn, signer, body, SLACK_RETRIES, tally)

    return job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cards", type=int, default=60)
    parser.add_argument("--agents", type=int, default=4)
    loadgen.add_load_arguments(
        parser, restart_help="SIGKILL one web worker and restart aitl worker mid-run"
    )
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds, --restart")
    args = parser.parse_args(argv)
    loadgen.check_load_arguments(parser, args)
    return args


def main() -> None:
    args = parse_args()
    figures = bench(args)
    verdicts = {
        "clicks_per_s >= 300": figures["clicks_per_s"] >= GOALS["clicks_per_s"],
        "ack p99 <= 200 ms": (figures["ack_p99_ms"] or 1e9) <= GOALS["p99_ms"],
        "zero lost": figures["lost"] == 0 and figures["not_acked"] == 0,
        "zero duplicated": figures["duplicated"] == 0,
    }
    if args.restart:
        verdicts["every refresh job done after the restarts"] = figures["refresh_jobs_left"] == 0
    name = "slack_clicks.restart" if args.restart else "slack_clicks"
    title = "Slack clicks → /slack/events (loopback, second process"
    title += ", one web worker killed, aitl worker restarted)" if args.restart else ")"
    loadgen.report(title, figures, verdicts, name)


def bench(args: argparse.Namespace, database_url: str | None = None) -> dict:
    """The figures of one run; on a temporary embedded PostgreSQL unless given a database."""
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-slack-bench-"))
    slack = SlackSandbox()
    agents = [f"U0BENCH{i:03d}" for i in range(args.agents)]
    for agent in agents:
        slack.add_user(agent, agent.lower())
    slack.add_usergroup("S0BENCH", "bench-agents", agents)
    try:
        with serve(slack):
            env = loadgen.slack_env(data_dir, slack.base_url)
            env["AITL_SLACK_AGENTS_USERGROUP"] = "S0BENCH"
            chosen = {"database_url": database_url} if database_url else {}
            db = open_database(Settings(_env_file=None, **loadgen.settings_kwargs(env), **chosen))
            env["DATABASE_URL"] = db.url
            try:
                slots = slot_payloads(slack, make_cards(db, slack, args.cards), agents)
                return _measure(args, env, db, slots, data_dir)
            finally:
                db.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _measure(args, env: dict[str, str], db, slots: list[list[dict]], data_dir: Path) -> dict:
    queue_worker = loadgen.QueueWorker(env, data_dir / "worker.log") if args.restart else None
    with loadgen.web_app(env, args.workers) as web:
        _warm_up(web.url + PATH, slots, args.workers)
        if queue_worker is not None:
            queue_worker.start()
        try:
            before, cpu_before = _count(db), loadgen.cpu_seconds([web.process])
            tally = loadgen.Tally()
            disruption = None
            if args.restart:
                busy = lambda: _jobs(db, "doing")  # noqa: E731
                disruption = loadgen.Disruption(web, queue_worker, args.clicks, busy=busy)
            lanes = click_lanes(slots, args.clicks, args.concurrency)
            began, ended = asyncio.run(
                loadgen.run_load(lanes, web.url + PATH, tally, disruption, args.rate)
            )
            after = loadgen.cpu_seconds([web.process])
            cpu = {k: round(v - cpu_before[k], 1) for k, v in after.items()}
            time.sleep(0.5)
            stored = _count(db) - before
            left = drained_s = None
            if queue_worker is not None:
                started = time.monotonic()
                left = _drain(db, args.drain_timeout)
                drained_s = round(time.monotonic() - started, 1)
                if left:
                    loadgen.show_tail(queue_worker.log, "aitl worker's log (jobs left)")
        finally:
            if queue_worker is not None:
                queue_worker.stop()
    figures = _figures(args, tally, ended - began, stored, _jobs(db), cpu)
    if disruption is not None:
        figures["refresh_jobs_left"] = left
        figures["drain_after_load_s"] = drained_s
        figures["refresh_jobs_by_status"] = _jobs_by_status(db)
        figures["disruptions"] = disruption.log
    return figures


PATH = "/slack/events"


def _warm_up(url: str, slots: list[list[dict]], workers: int) -> None:
    """Clicks on spare slots until every worker process has its caches and pools filled."""
    spare = [slots.pop() for _ in range(workers * 2)]
    payloads = [payload for slot in spare for payload in slot]
    tally = loadgen.Tally()
    lanes = click_lanes([[p] for p in payloads], len(payloads), workers * 2)
    asyncio.run(loadgen.run_load(lanes, url, tally))
    if tally.acked != len(payloads):
        raise SystemExit(f"warm-up clicks failed: {dict(tally.statuses)}")


def _count(db) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0]


def _jobs(db, status: str | None = None) -> int:
    """Refresh jobs queued so far, or those in one status."""
    with db.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s"
            " AND (%s::text IS NULL OR status::text = %s)",
            (REFRESH, status, status),
        ).fetchone()[0]


def _jobs_by_status(db) -> dict[str, int]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = %s"
            " GROUP BY 1 ORDER BY 1",
            (REFRESH,),
        ).fetchall()
    return dict(rows)


def _drain(db, timeout_s: float) -> int:
    """Refresh jobs not finished (todo or doing) once the restarted worker had its time."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.connection() as conn:
            left = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s"
                " AND status IN ('todo', 'doing')",
                (REFRESH,),
            ).fetchone()[0]
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def _figures(args, tally: loadgen.Tally, seconds: float, stored: int, jobs: int, cpu) -> dict:
    return {
        "clicks_sent": tally.sent,
        "acked_200": tally.acked,
        "not_acked": tally.sent - tally.acked,
        "retried": tally.retried,
        "events_stored": stored,
        "lost": max(0, tally.acked - stored),
        "duplicated": max(0, stored - tally.acked),
        "refresh_jobs_queued": jobs,
        "seconds": round(seconds, 2),
        "clicks_per_s": round(tally.sent / seconds, 1),
        **loadgen.run_figures(tally, args, cpu),
        "cards": args.cards,
        "agents": args.agents,
    }


if __name__ == "__main__":
    main()
