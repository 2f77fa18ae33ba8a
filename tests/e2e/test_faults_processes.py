"""Faults against real processes: ``aitl worker`` killed with SIGKILL while Slack or Zendesk
holds its request, PostgreSQL restarted under a stream of signed clicks into ``aitl web``,
and a flywheel cycle killed mid-training. Nothing acknowledged is lost, nothing is done twice.

The Slack and Zendesk sandboxes run in this process; the product runs in child processes
started here with the test's settings (``tests/support/processes.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from aitl.app.wiring import build_services
from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.queue import build_deferrer
from aitl.core.settings import Settings
from bot import card_views as card_blocks
from bot import store as bot_store
from flywheel import store as flywheel_store
from rag import store as rag_store
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import AGENT_ALICE, AGENT_BOB, SUPPORT_CHANNEL, encode_interactivity
from sandboxes.zendesk.server import ZendeskSandbox
from tests.conftest import clone_database, drop_database, make_settings
from tests.support import processes
from tests.support.drafts import draft_set
from tests.support.flywheel import annotate_samples
from tests.support.processes import AitlProcess, wait_for
from tests.support.sandboxes import connected_settings, zendesk_server

TICKET_UPDATE = r"^/api/v2/tickets/\d+\.json$"
PREFERENCES = ("A", "B", "tie", "both_bad")
# a small cycle (as tests/flywheel/test_flywheel.py runs it) whose gate accepts any challenger
TINY_CYCLE = dict(
    flywheel_holdout=0.25,
    flywheel_min_eval_queries=3,
    flywheel_min_examples=8,
    retriever_batch_size=8,
    flywheel_max_seq_length=64,
    judge_min_read_s=3.0,
    gate_margin=-1.0,
    gate_tolerance=1.0,
    flywheel_max_examples=16,  # a few training steps: enough to be killed in, quick to finish
)
SLACK_TIMEOUT_S = 3.0  # Slack gives up on an ack after 3 s and retries
SLACK_ATTEMPTS = 40  # Slack gives up after 3 retries; here a click waits out the restart


# --- one knowledge base, both sandboxes and a worker process for the whole module -----------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults-proc")


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackSandbox]:
    box = SlackSandbox()
    with serve(box):
        yield box


@pytest.fixture(scope="module")
def zendesk() -> Iterator[ZendeskSandbox]:
    with zendesk_server() as box:
        yield box


@pytest.fixture(scope="module")
def settings(pg_server_url, samples_template_url, slack, zendesk, folder) -> Iterator[Settings]:
    url = clone_database(pg_server_url, samples_template_url)
    base = make_settings(url, folder / "data")
    connected = connected_settings(base, slack, zendesk, folder / "data")
    # Zendesk answers are held while the worker is killed: the client must not give up first
    yield connected.model_copy(update={"zendesk_timeout_s": 30})
    drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def db(settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="module")
def services(settings, db):
    return build_services(settings, db, build_deferrer(db.url))


class Workers:
    """The module's ``aitl worker``: killed by a test, replaced by a fresh one."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.current: AitlProcess | None = None

    def running(self) -> AitlProcess:
        if self.current is None or not self.current.alive():
            self.current = processes.start_worker(self.settings, self.folder)
        return self.current

    def kill(self) -> None:
        """SIGKILL the worker; its heartbeat is then aged past procrastinate's stalled-worker
        timeout, as 30 s of waiting would, so the next worker's sweep finds its jobs now."""
        assert self.current is not None
        worker_ids = processes.worker_ids(self.settings.database_url.get_secret_value())
        self.current.kill()
        with psycopg.connect(self.settings.database_url.get_secret_value()) as conn:
            conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
                " WHERE id = ANY(%s)",
                (list(worker_ids),),
            )
        self.current = None

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()


@pytest.fixture(scope="module")
def workers(settings, db, folder) -> Iterator[Workers]:
    pool = Workers(settings, folder)
    yield pool
    pool.stop()


def rows(db: Database, sql: str, *args) -> list[tuple]:
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def finished(db: Database, task: str) -> None:
    """Wait for the task's one job to succeed, on the attempt after the one that was killed
    (procrastinate counts both: the dead worker's, put back by the sweep, and the last)."""
    sql = "SELECT status::text, attempts FROM procrastinate_jobs WHERE task_name = %s"
    wait_for(lambda: rows(db, sql, task)[0][0] == "succeeded", 90, f"{task} to succeed")
    assert rows(db, sql, task) == [("succeeded", 2)]


# --- 1. the worker killed in the middle of a call ------------------------------------------


def thread_messages(slack: SlackSandbox, ticket_id: int) -> tuple[list, list]:
    """The ticket's parent messages in the channel, and the replies in their threads."""
    parents = [m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket_id}" in m.get("text", "")]
    replies = [r for p in parents for r in slack.replies(SUPPORT_CHANNEL, p["ts"])]
    return parents, replies


def test_worker_killed_while_slack_holds_the_post_resumes_and_posts_once(
    services, db, slack, zendesk, workers
):
    workers.running()
    ticket = zendesk.create_ticket("Refund twice?", "I was charged twice.", "kim@example.com")
    # Slack takes the parent message, then holds its answer: the worker dies before it can
    # record the ts, which is the worst case for a duplicate
    slack.delay("chat.postMessage", seconds=20)
    services.zendesk.ticket_sync.sync(ticket["id"], via="webhook")
    wait_for(lambda: thread_messages(slack, ticket["id"])[0], 90, "the parent message in Slack")
    workers.kill()

    workers.running()
    finished(db, "connectors:draft")
    assert rows(
        db, "SELECT status FROM zendesk_draft_requests WHERE ticket_id = %s", ticket["id"]
    ) == [("delivered",)]
    parents, replies = thread_messages(slack, ticket["id"])
    assert len(parents) == 1, "one thread for the ticket, not one per attempt"
    assert len(replies) == 1, "one card in the thread"
    [(parent_ts, card_ts)] = rows(
        db,
        "SELECT parent_ts, card_ts FROM slack_cards WHERE ticket_ref = %s",
        f"zendesk:{ticket['id']}",
    )
    assert (parent_ts, card_ts) == (parents[0]["ts"], replies[0]["ts"])


def test_worker_killed_while_zendesk_holds_the_comment_resumes_and_comments_once(
    services, db, zendesk, workers
):
    workers.running()
    ticket = zendesk.create_ticket("Password reset", "The link expired.", "lee@example.com")
    before = len(zendesk.comments(ticket["id"]))
    # Zendesk applies the comment, then holds its answer until the worker is gone
    zendesk.delay("PUT", TICKET_UPDATE, seconds=20)
    body = "Here is a new reset link; it is valid for 24 hours."
    services.zendesk.writeback.request(key="faults:writeback:1", ticket_id=ticket["id"], body=body)
    wait_for(lambda: len(zendesk.comments(ticket["id"])) > before, 90, "the comment in Zendesk")
    workers.kill()

    workers.running()
    finished(db, "connectors:write_back")
    added = zendesk.comments(ticket["id"])[before:]
    assert [c["body"].strip() for c in added] == [body], "exactly one comment, the draft's"
    [(comment_id,)] = rows(
        db,
        "SELECT comment_id FROM zendesk_writebacks WHERE idempotency_key = %s",
        "faults:writeback:1",
    )
    assert comment_id == added[0]["id"]


# --- 2. PostgreSQL restarted under a stream of clicks ------------------------------------


@pytest.fixture(scope="module")
def private_pg(folder) -> Iterator[processes.PrivatePostgres]:
    with processes.private_postgres(folder / "private-pg") as pg:
        yield pg


@pytest.fixture(scope="module")
def click_settings(private_pg, slack, zendesk, folder) -> Settings:
    base = make_settings(private_pg.url, folder / "click-data")
    return connected_settings(base, slack, zendesk, folder / "click-data")


@pytest.fixture(scope="module")
def click_db(click_settings) -> Iterator[Database]:
    database = open_database(click_settings)
    yield database
    database.close()


@pytest.fixture(scope="module")
def web(click_settings, click_db, folder) -> Iterator[str]:
    process, url = processes.start_web(click_settings, folder)
    yield url
    process.stop()


def shown_cards(db: Database, slack: SlackSandbox, numbers: range) -> list[str]:
    """Draft sets with their cards shown in #support; returns the cards' message ts."""
    stamps = []
    with db.connection() as conn:
        for number in numbers:
            set_id, drafts = draft_set(conn, ticket_ref=f"zendesk:{number}")
            card = bot_store.ensure_card(
                conn,
                handoff_key=f"faults:{number}",
                kind="ticket",
                draft_set_id=set_id,
                ticket_ref=f"zendesk:{number}",
                drafts=drafts,
                header={"number": number, "subject": "Restart"},
                channel=SUPPORT_CHANNEL,
            )
            content = card_blocks.CardContent(
                set_id, "ticket", card.header, rag_store.drafts_of_set(conn, set_id), [], []
            )
            blocks, text = card_blocks.card_blocks(content)
            channel, message = slack.post_message(
                SUPPORT_CHANNEL, text=text, blocks=card_blocks.as_dicts(blocks)
            )
            bot_store.mark_shown(conn, card.id, channel, message["ts"])
            stamps.append(message["ts"])
    return stamps


@dataclass
class Click:
    body: bytes
    action_ts: str
    acked: bool = False
    refused: int = 0  # attempts answered with anything but 2xx (or not at all)


def lane_clicks(slack: SlackSandbox, stamps: list[str], agent: str, count: int) -> list[Click]:
    """One agent changing their preference on each card in turn: every click is a new answer."""
    clicks = []
    for n in range(count):
        ts, value = stamps[n % len(stamps)], PREFERENCES[(n // len(stamps)) % len(PREFERENCES)]
        payload = slack.block_actions(agent, SUPPORT_CHANNEL, ts, f"aitl.prefer.{value}")
        action_ts = payload["actions"][0]["action_ts"]
        clicks.append(Click(encode_interactivity(payload), action_ts))
    return clicks


def deliver(slack: SlackSandbox, url: str, clicks: list[Click]) -> None:
    """Send each click until it is acknowledged, retrying as Slack does (X-Slack-Retry-Num),
    before the next one: a lane's answers reach the app in the order the agent gave them."""
    with httpx.Client(timeout=SLACK_TIMEOUT_S) as client:
        for click in clicks:
            for attempt in range(SLACK_ATTEMPTS):
                headers = slack.signed_headers(click.body)
                if attempt:
                    headers |= {
                        "X-Slack-Retry-Num": str(attempt),
                        "X-Slack-Retry-Reason": "http_error",
                    }
                try:
                    status = client.post(
                        f"{url}/slack/events", content=click.body, headers=headers
                    ).status_code
                except httpx.HTTPError:
                    status = None
                if status == 200:
                    click.acked = True
                    break
                click.refused += 1
                time.sleep(0.2)


def test_clicks_across_a_postgres_restart_are_stored_once_each(click_db, private_pg, slack, web):
    stamps = shown_cards(click_db, slack, range(1, 4))
    lanes = [lane_clicks(slack, stamps, agent, 40) for agent in (AGENT_ALICE, AGENT_BOB)]
    clicks = [c for lane in lanes for c in lane]
    assert len({c.action_ts for c in clicks}) == len(clicks)  # each click is told apart
    thirds = [
        [
            lane[: len(lane) // 3],
            lane[len(lane) // 3 : 2 * len(lane) // 3],
            lane[2 * len(lane) // 3 :],
        ]
        for lane in lanes
    ]
    with ThreadPoolExecutor(len(lanes)) as pool:

        def phase(n: int) -> list:
            return [pool.submit(deliver, slack, web, parts[n]) for parts in thirds]

        for future in phase(0):  # before
            future.result()
        private_pg.stop()
        during = phase(1)  # sent while the server is down, longer than Slack waits for an ack
        time.sleep(SLACK_TIMEOUT_S + 1)
        private_pg.start()
        for future in during:
            future.result()
        for future in phase(2):  # after: every pooled connection was cut
            future.result()

    refused = sum(c.refused for c in clicks)
    print(f"{len(clicks)} clicks, {refused} attempts not acknowledged and sent again")
    assert refused > 0, "the outage was felt: some clicks went unacknowledged"
    assert all(c.acked for c in clicks), "every click is acknowledged once the database is back"
    stored = rows(
        click_db,
        "SELECT source_ref ->> 'action_ts' FROM feedback_events WHERE kind = 'preference'",
    )
    stored_ts = [ts for (ts,) in stored]
    assert len(stored_ts) == len(set(stored_ts)), "no click is stored twice"
    assert sorted(stored_ts) == sorted(c.action_ts for c in clicks), "no click is lost"


def test_a_late_retry_of_a_click_the_agent_has_since_changed_is_not_stored_again(
    click_db, slack, web
):
    [stamp] = shown_cards(click_db, slack, range(10, 11))
    first, second = lane_clicks(slack, [stamp], AGENT_ALICE, 2)  # A, then B on the same card
    deliver(slack, web, [first, second])
    # Slack retries the first click later (its first answer was too slow): by then the agent
    # has moved on, and the copy must neither count twice nor become the standing answer
    late = Click(first.body, first.action_ts)
    headers = slack.signed_headers(late.body) | {"X-Slack-Retry-Num": "1"}
    response = httpx.post(f"{web}/slack/events", content=late.body, headers=headers, timeout=10)
    assert response.status_code == 200
    stored = rows(
        click_db,
        "SELECT value FROM feedback_events WHERE draft_set_id ="
        " (SELECT draft_set_id FROM slack_cards WHERE card_ts = %s) ORDER BY id",
        stamp,
    )
    assert stored == [("A",), ("B",)]


# --- 3. a retraining cycle killed mid-training --------------------------------------------


@pytest.fixture
def annotated(pg_server_url, samples_template_url, tmp_path) -> Iterator[Settings]:
    """A fresh copy of the sample KB with the sample tickets drafted, shown and annotated,
    and settings for a small cycle whose gate accepts any challenger."""
    url = clone_database(pg_server_url, samples_template_url)
    settings = make_settings(url, tmp_path / "data", **TINY_CYCLE)
    database = open_database(settings)
    try:
        annotate_samples(settings, database, variants=1)
    finally:
        database.close()
    yield settings
    drop_database(pg_server_url, url)


def live_state(db: Database) -> tuple:
    """What serving reads: the champions (and challengers) and the live knowledge-base index."""
    with db.connection() as conn:
        return flywheel_store.champions_signature(conn), rag_store.live_version(conn).version


def training_started(scratch: Path) -> bool:
    return any(scratch.glob("aitl-retriever-*")) or any(scratch.glob("aitl-reranker-*"))


@pytest.mark.slow
def test_a_cycle_killed_while_training_changes_nothing_live_and_the_next_one_runs(
    annotated, tmp_path
):
    db = open_database(annotated)
    try:
        before = live_state(db)
        scratch = tmp_path / "scratch"  # the trainers' temporary folders show when they start
        scratch.mkdir()
        cycle = processes.start(
            "cycle", ["flywheel", "run"], annotated, tmp_path, TMPDIR=str(scratch)
        )
        cycle.wait_until(lambda: training_started(scratch), 180, "training")
        assert cycle.alive(), cycle.fail("the cycle ended before it trained")
        cycle.kill()

        assert live_state(db) == before, "a killed cycle changes nothing live"
        assert rows(db, "SELECT status FROM flywheel_runs") == [("running",)]

        # the lock died with the process: the next cycle runs, closes the abandoned run, and
        # its accepted challengers go live
        again = processes.start("cycle-again", ["flywheel", "run"], annotated, tmp_path)
        assert again.popen.wait(timeout=600) == 0, again.fail("the next cycle failed")
        runs = rows(db, "SELECT status, error FROM flywheel_runs ORDER BY id")
        assert runs == [
            ("failed", "abandoned: the process running it stopped"),
            ("succeeded", None),
        ]
        assert live_state(db) != before
    finally:
        db.close()
