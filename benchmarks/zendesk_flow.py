"""Zendesk connector figures: webhook → job-enqueued latency, duplicates suppressed, and
tickets ingested exactly once through both paths (webhooks and the export poller).

Runs on a temporary embedded PostgreSQL, the local Zendesk sandbox and the real web app over
loopback. Usage: ``.venv/bin/python benchmarks/zendesk_flow.py [--tickets 300] [--dupes 2]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import httpx
from rich.console import Console
from rich.table import Table

from aitl.app.web import create_app
from aitl.core.bootstrap import open_database
from aitl.core.queue import build_app, build_deferrer
from aitl.core.servers import serve_in_thread
from aitl.core.settings import PROJECT_ROOT, Settings
from benchmarks.loadgen import percentile
from connectors import jobs, setup, signature
from connectors.services import ZendeskServices
from rag import factory
from sandboxes.zendesk.server import ZendeskSandbox
from sandboxes.zendesk.server import create_app as sandbox_app

console = Console()
RESULTS = Path(__file__).resolve().parent / "results" / "zendesk_flow.json"


def send(
    client: httpx.Client, url: str, secret: str, body: bytes, offset_s: int
) -> tuple[int, float]:
    stamp = (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": signature.sign(secret, stamp, body),
    }
    started = time.perf_counter()
    response = client.post(url, content=body, headers=headers)
    return response.status_code, (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--dupes", type=int, default=2, help="redeliveries per event")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-zd-bench-"))
    zendesk = ZendeskSandbox(deliver_in_background=False)
    try:
        with serve_in_thread(sandbox_app(zendesk)) as zd:
            settings = Settings(
                _env_file=None,
                data_dir=data_dir,
                zendesk_base_url=zd.url,
                zendesk_email=zendesk.agent_email,
                zendesk_api_token=zendesk.api_token,
            )
            db = open_database(settings)
            factory.ingestor(settings, db).ingest_path(
                PROJECT_ROOT / "samples" / "kb", source="samples", max_bytes=10**6
            )
            figures = run(settings, db, zendesk, args)
            db.close()
    finally:
        zendesk.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    report(figures)


def run(settings: Settings, db, zendesk: ZendeskSandbox, args) -> dict:
    services = ZendeskServices(settings, db, build_deferrer(db.url))
    with serve_in_thread(create_app(settings, database=db)) as web:
        setup.connect(
            services, email=zendesk.agent_email, api_token=zendesk.api_token, public_url=web.url
        )
        secret = services.webhook_secrets()[0]
        tickets = [
            zendesk.create_ticket(
                f"Question {i}", f"My hub {i} will not pair.", f"c{i}@example.com"
            )
            for i in range(args.tickets)
        ]
        bodies = [d.body for d in zendesk.outbox.deliveries]
        url = f"{web.url}/zendesk/webhook"
        latencies, statuses = [], []
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(4) as pool:
            for round_ in range(1 + args.dupes):
                for status, ms in pool.map(send, *_args(client, url, secret, bodies, round_)):
                    statuses.append(status)
                    latencies.append(ms)
        worker = build_app(db.url, [jobs.blueprint()])
        started = time.perf_counter()
        worker.run_worker(
            wait=False,
            install_signal_handlers=False,
            listen_notify=False,
            additional_context={"zendesk": services},
        )
        drain_s = time.perf_counter() - started
        poll = services.poller.poll()
    with db.connection() as conn:
        count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "tickets_created": len(tickets),
            "webhooks_sent": len(statuses),
            "answered_2xx": sum(200 <= s < 300 for s in statuses),
            "events_stored": count("SELECT count(*) FROM zendesk_events"),
            "duplicates_suppressed": count(
                "SELECT coalesce(sum(duplicates), 0) FROM zendesk_events"
            ),
            "jobs_queued_for_events": count(
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE task_name = 'connectors:process_event'"
            ),
            "tickets_ingested": count("SELECT count(*) FROM zendesk_tickets"),
            "draft_requests": count("SELECT count(*) FROM zendesk_draft_requests"),
            "drafted": count(
                "SELECT count(*) FROM zendesk_draft_requests WHERE status <> 'queued'"
            ),
            "poller_tickets_seen": poll.tickets_seen,
            "poller_drafts_requested": poll.drafts_requested,
            "enqueue_latency_ms": {
                "p50": round(statistics.median(latencies), 2),
                "p99": round(percentile(latencies, 99), 2),
                "max": round(max(latencies), 2),
            },
            "worker_drain_s": round(drain_s, 1),
        }


def _args(client, url: str, secret: str, bodies: list[bytes], offset_s: int):
    n = len(bodies)
    return [client] * n, [url] * n, [secret] * n, bodies, [offset_s] * n


def report(figures: dict) -> None:
    table = Table("figure", "value", title="Zendesk connector")
    for key, value in figures.items():
        table.add_row(key, json.dumps(value))
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
