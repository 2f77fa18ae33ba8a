"""``aitl demo``: the whole loop on one machine, against the local Slack and Zendesk sandboxes.

Sample tickets arrive in the Zendesk sandbox week by simulated week; its signed webhooks reach
our web app, the worker drafts and posts each ticket's thread to the Slack sandbox; simulated
agents click through the sandbox page's endpoint (signed requests to ``/slack/events``, the same
path a person's clicks take); one flywheel cycle retrains and gates the models before the last
week; the digest is posted to the managers. Web runs here; the worker and the scheduler run as
`aitl worker` / `aitl scheduler` child processes of the same process group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from aitl.app.web import create_app
from aitl.app.wiring import build_services
from aitl.core.db import Database
from aitl.core.exceptions import AitlError
from aitl.core.queue import build_deferrer
from aitl.core.servers import serve_in_thread
from aitl.core.settings import Settings
from bot import store as bot_store
from connectors import setup
from connectors import store as zendesk_store
from flywheel import store as feedback_store
from flywheel.cycle import Flywheel
from flywheel.digest.metrics import Window, week_metrics
from rag import factory
from rag import store as rag_store
from rag.models import TicketRef
from sandboxes.agents.policy import AgentPolicy
from sandboxes.agents.sandbox_agent import SandboxAgent, SimClock, card_of
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import (
    AGENT_ALICE,
    AGENT_BOB,
    AGENTS_GROUP,
    BOT_TOKEN,
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
)
from sandboxes.zendesk.server import ZendeskSandbox
from sandboxes.zendesk.server import create_app as zendesk_app

Say = Callable[[str], None]
MANAGER, ADMIN = "U0MANAGER", "U0ADMIN"
DIGEST_CHANNEL = "C0DIGEST"
AGENT_NAMES = ("alice", "bob", "carla", "dev", "emma", "farid", "gita", "hugo")


class DemoError(AitlError):
    """The demo could not run its loop."""


@dataclass(frozen=True)
class DemoOptions:
    tickets: int = 300  # from the sample stream, in order
    agents: int = 4
    noise: float = 0.2  # share of relevance marks flipped
    careless: float = 0.1  # share of cards clicked through unread
    sandbox_port: int = 0  # 0: any free port
    zendesk_port: int = 0
    web_port: int = 0
    card_timeout_s: float = 120.0
    seed: int = 7
    # tickets whose drafts A/B are extractive vs LLM: SmolLM2 takes ~5 s a reply on 2 cores,
    # so all 300 would add about 20 minutes; a quarter still gives the cycle its pairs
    challenger_share: float = 0.25


@dataclass(frozen=True)
class StreamTicket:
    id: str
    week: int
    subject: str
    body: str
    expected_articles: tuple[str, ...]


@dataclass
class DemoReport:
    tickets: int = 0
    threads: int = 0
    clicks: int = 0
    events: int = 0
    weeks: int = 0
    cycle: dict[str, Any] = field(default_factory=dict)
    before: dict[str, float | None] = field(default_factory=dict)
    after: dict[str, float | None] = field(default_factory=dict)
    digest: dict[str, Any] = field(default_factory=dict)
    sandbox_url: str = ""
    zendesk_url: str = ""


def load_stream(path: Path, limit: int) -> list[StreamTicket]:
    """``limit`` tickets of the stream, evenly spaced so every simulated week keeps some."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit < len(lines):
        lines = [lines[round(i * len(lines) / limit)] for i in range(limit)]
    tickets = []
    for line in lines:
        record = json.loads(line)
        tickets.append(
            StreamTicket(
                record["id"],
                int(record.get("week", 0)),
                record["subject"],
                record["body"],
                tuple(record.get("expected_articles", [])),
            )
        )
    return tickets


class Demo:
    def __init__(self, settings: Settings, db: Database, options: DemoOptions, say: Say) -> None:
        self.base = settings
        self.db = db
        self.options = options
        self.say = say

    def run(self, *, keep_running: Callable[[DemoReport], None] | None = None) -> DemoReport:
        """The loop; ``keep_running`` is called with the report while everything still runs."""
        with ExitStack() as stack:
            report = self._run(stack)
            if keep_running is not None:
                keep_running(report)
            return report

    # --- the loop --------------------------------------------------------------------------

    def _run(self, stack: ExitStack) -> DemoReport:

        report = DemoReport()
        stream = load_stream(self.base.samples_dir / "ticket_stream.jsonl", self.options.tickets)
        self._ingest()
        clock = SimClock()
        slack, zendesk = stack.enter_context(self._sandboxes(clock))
        settings = self._product_settings(slack, zendesk)
        web = stack.enter_context(self._web(settings))
        slack.app_url = f"{web.url}/slack/events"
        report.sandbox_url, report.zendesk_url = slack.base_url, f"{zendesk.url}/sandbox/zendesk"
        services = build_services(settings, self.db, build_deferrer(self.db.url))
        setup.connect(
            services.zendesk,
            email=zendesk.agent_email,
            api_token=zendesk.api_token,
            public_url=web.url,
        )
        stack.enter_context(self._processes(settings))
        agents = self._agents(slack, clock)
        weeks = sorted({t.week for t in stream})
        started = datetime.now(UTC)
        for week in weeks[:-1]:
            self._week(report, week, [t for t in stream if t.week == week], zendesk, agents)
        # clicks carry up to a minute of reading time ahead of the wall clock, and the worker
        # loads promoted models within seconds: the last week starts after both
        cycle_at = datetime.now(UTC) + timedelta(seconds=60)
        report.cycle = self._cycle(settings)
        pause = (cycle_at - datetime.now(UTC)).total_seconds()
        if pause > 0:
            self.say(f"giving the worker {pause:.0f} s to load what the cycle promoted")
            time.sleep(pause)
        for week in weeks[-1:]:
            self._week(report, week, [t for t in stream if t.week == week], zendesk, agents)
        report.weeks = len(weeks)
        report.before, report.after = self._online(started, cycle_at)
        report.digest = self._digest(services)
        with self.db.connection() as conn:
            report.events = feedback_store.event_count(conn)
        return report

    def _ingest(self) -> None:

        self.say("ingesting the sample knowledge base")
        factory.ingestor(self.base, self.db).ingest_path(
            self.base.samples_dir / "kb", source="samples", max_bytes=self.base.max_document_bytes
        )

    @contextmanager
    def _sandboxes(self, clock) -> Iterator[tuple[Any, Any]]:

        slack = SlackSandbox(clock=clock)
        # a click's ack waits on a 2-core machine doing everything else too; Slack's 3 s would
        # make the demo's own agents fail where a person would just click again
        slack.ack_timeout_s = 30.0
        slack.add_user(MANAGER, "maya", "maya@sandbox.example", real_name="Maya Manager")
        slack.add_user(ADMIN, "ada", "ada@sandbox.example", real_name="Ada Admin")
        slack.add_channel(DIGEST_CHANNEL, "support-leads", members=(MANAGER, ADMIN))
        zendesk = ZendeskSandbox(deliver_in_background=True)
        with (
            serve(slack, port=self.options.sandbox_port),
            serve_in_thread(zendesk_app(zendesk), port=self.options.zendesk_port) as zd,
        ):
            zendesk.url = zd.url
            yield slack, zendesk
        zendesk.close()

    def _product_settings(self, slack, zendesk) -> Settings:

        return self.base.model_copy(
            update={
                "database_url": self.base.database_url or _secret(self.db.url),
                "slack_bot_token": _secret(BOT_TOKEN),
                "slack_signing_secret": _secret(SIGNING_SECRET),
                "slack_api_url": f"{slack.base_url}/api/",
                "slack_default_channel": SUPPORT_CHANNEL,
                "slack_agents_usergroup": AGENTS_GROUP,
                "slack_admin_ids": [ADMIN],
                "slack_manager_ids": [MANAGER],
                "slack_digest_channel": DIGEST_CHANNEL,
                "zendesk_base_url": zendesk.url,
                "zendesk_email": zendesk.agent_email,
                "zendesk_api_token": _secret(zendesk.api_token),
                "challenger_share": self.options.challenger_share,
            }
        )

    @contextmanager
    def _web(self, settings: Settings):

        with serve_in_thread(
            create_app(settings, database=self.db), port=self.options.web_port
        ) as web:
            yield web

    @contextmanager
    def _processes(self, settings: Settings) -> Iterator[None]:
        """`aitl worker` and `aitl scheduler`, in this process group, stopped on the way out."""
        env = {**os.environ, **_environment(settings, self.db.url)}
        children = [
            subprocess.Popen(
                [sys.executable, "-c", "from aitl.app.cli import main; main()", name],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name in ("worker", "scheduler")
        ]
        try:
            yield
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _agents(self, slack, clock) -> list[Any]:

        ids = [AGENT_ALICE, AGENT_BOB]
        for name in AGENT_NAMES[2 : self.options.agents]:
            user = f"U0{name.upper()}"
            slack.add_user(user, name, f"{name}@sandbox.example", real_name=name.title())
            slack.add_member(SUPPORT_CHANNEL, user)
            ids.append(user)
        slack.add_usergroup(AGENTS_GROUP, "agents", ids[: self.options.agents])
        policy = AgentPolicy(noise=self.options.noise, careless_share=self.options.careless)
        return [
            SandboxAgent(
                slack,
                slack.base_url,
                self.db,
                user,
                policy,
                seed=self.options.seed + n,
                clock=clock,
            )
            for n, user in enumerate(ids[: self.options.agents])
        ]

    def _week(self, report: DemoReport, week: int, tickets, zendesk, agents) -> None:

        self.say(f"week {week}: {len(tickets)} tickets arrive in Zendesk")
        refs = {}
        for n, ticket in enumerate(tickets):
            created = zendesk.create_ticket(
                ticket.subject,
                ticket.body,
                f"customer{report.tickets + n + 1}@example.com",
                requester_name=f"Customer {report.tickets + n + 1}",
            )
            refs[str(TicketRef.zendesk(created["id"]))] = ticket
        report.tickets += len(tickets)
        cards = self._wait_for_cards(set(refs))
        report.threads += len(cards)
        slack = agents[0].sandbox
        for n, (ref, (channel, ts)) in enumerate(sorted(cards.items())):
            ticket = refs[ref]
            card = card_of(
                slack.message(channel or SUPPORT_CHANNEL, ts), channel or SUPPORT_CHANNEL
            )
            if card is None:
                continue
            agent = agents[n % len(agents)]
            agent.clock.new_card()
            gap = None if ticket.expected_articles else f"No article covers this: {ticket.subject}"
            report.clicks += agent.annotate(card, self._gold(ticket), gap)
        self.say(f"week {week}: {len(cards)} threads, {report.clicks:,} clicks so far")

    def _wait_for_cards(self, refs: set[str]) -> dict[str, tuple[str, str]]:
        deadline = time.monotonic() + self.options.card_timeout_s + 2 * len(refs)
        while True:
            with self.db.connection() as conn:
                found = bot_store.shown_ticket_threads(conn, sorted(refs))
            if len(found) == len(refs):
                return found
            if time.monotonic() > deadline:
                missing = len(refs) - len(found)
                raise DemoError(
                    f"{missing} of {len(refs)} tickets got no Slack thread in time; see the"
                    " worker's log (`aitl worker -v`)"
                )
            time.sleep(0.5)

    def _gold(self, ticket: StreamTicket) -> set[int]:
        if not ticket.expected_articles:
            return set()

        with self.db.connection() as conn:
            return rag_store.live_chunk_ids_of_documents(conn, ticket.expected_articles)

    def _cycle(self, settings: Settings) -> dict[str, Any]:

        self.say("the flywheel: judging the clicks, retraining, evaluating, gating")
        report = Flywheel(settings, self.db, progress=lambda step: self.say(f"  {step}")).run(
            "demo"
        )
        return {
            "status": report.status,
            "seconds": report.seconds,
            "metrics": report.metrics,
            "decisions": report.decisions,
            "error": report.error,
        }

    def _online(self, started: datetime, cycle_at: datetime):

        now = datetime.now(UTC) + timedelta(seconds=120)
        with self.db.connection() as conn:
            sent = zendesk_store.sent_adoption
            before = week_metrics(conn, Window(started, cycle_at), sent_adoption=sent)
            after = week_metrics(conn, Window(cycle_at, now), sent_adoption=sent)
        return _online_figures(before), _online_figures(after)

    def _digest(self, services) -> dict[str, Any]:
        self.say("the weekly digest: to the managers and #support-leads")
        digest = services.slack.digest
        sent = digest.send(digest.window(datetime.now(UTC).date()))
        return {"sent": sent.sent, "skipped": sent.skipped, "week": str(sent.week_start)}


def _online_figures(metrics) -> dict[str, float | None]:
    return {
        "adoption_rate": metrics.adoption_rate,
        "relevance_precision": metrics.relevance_precision,
        "missing_rate": metrics.missing_rate,
        "win_rate": metrics.win_rate,
    }


def _secret(value: str):

    return SecretStr(value)


def _environment(settings: Settings, database_url: str) -> dict[str, str]:
    """The product settings the child processes need, as the AITL_* variables they read."""

    def plain(value: Any) -> str:
        if hasattr(value, "get_secret_value"):
            return value.get_secret_value()
        if isinstance(value, list | dict):
            return json.dumps(value)
        return str(value)

    names = (
        "slack_bot_token",
        "slack_signing_secret",
        "slack_api_url",
        "slack_default_channel",
        "slack_agents_usergroup",
        "slack_admin_ids",
        "slack_manager_ids",
        "slack_digest_channel",
        "zendesk_base_url",
        "zendesk_email",
        "zendesk_api_token",
        "data_dir",
        "challenger_share",
    )
    env = {f"AITL_{name.upper()}": plain(getattr(settings, name)) for name in names}
    env["DATABASE_URL"] = database_url
    return env
