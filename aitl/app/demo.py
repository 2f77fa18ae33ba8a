"""``aitl demo``: the whole loop on one machine, against the local Slack and Zendesk sandboxes.

Sample tickets arrive in the Zendesk sandbox week by simulated week; its signed webhooks reach
our web app, the worker drafts and posts each ticket's thread to the Slack sandbox; simulated
agents click through the sandbox page's endpoint (signed requests to ``/slack/events``, the same
path a person's clicks take) and send the draft they used as their reply in Zendesk. Each week
is then moved to the past calendar week it stands for (``demo_time``); the weekly cycle runs
after some weeks, the online A/B test is checked after each, and the report compares what
agents saw before and after each cycle with intervals (``demo_report``). The digest of the last
week goes to the managers. Web runs here; the worker and the scheduler run as `aitl worker` /
`aitl scheduler` child processes of the same process group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from aitl.app.demo_report import Card, compare
from aitl.app.demo_time import PastWeeks
from aitl.app.web import create_app
from aitl.app.wiring import build_services, flywheel_services, memory_builder
from aitl.core.db import Database
from aitl.core.exceptions import AitlError
from aitl.core.queue import build_deferrer, waiting_jobs
from aitl.core.servers import serve_in_thread
from aitl.core.settings import Settings
from bot import store as bot_store
from connectors import setup
from flywheel import store as feedback_store
from flywheel.cycle import Flywheel
from flywheel.digest.report import duel_line
from flywheel.memory import cycle_figures as memory_figures
from flywheel.online import summary
from flywheel.reports import evidence_line, judge_summary, redundancy_line
from flywheel.serving import CHECK_EVERY_S
from rag import encoders, factory
from rag import store as rag_store
from rag.models import TicketRef
from rag.prompts import PromptLibrary
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
    # of the sample stream's 300, evenly spread over its weeks: 200 keep `make demo` within
    # 15 minutes on 2 cores, install included (240 took 15.6)
    tickets: int = 200
    agents: int = 4
    noise: float = 0.2  # share of relevance marks flipped
    careless: float = 0.1  # share of cards clicked through unread
    sandbox_port: int = 0  # 0: any free port
    zendesk_port: int = 0
    web_port: int = 0
    card_timeout_s: float = 120.0
    seed: int = 7
    # tickets whose drafts A/B are extractive vs LLM: SmolLM2 takes ~5 s a reply on 2 cores,
    # so all 200 would add about 15 minutes; a third gives the cycles their pairs and the
    # online test enough duels to decide (a quarter left it at 25 of the 30 it needs first)
    challenger_share: float = 0.35
    cycles: int = 2  # weekly cycles, spread evenly over the stream's weeks
    # the demo's cycles train the LLM on fewer pairs and check it on fewer tickets than the
    # product's defaults (48 and 12) so that the whole run fits in 15 minutes; said in its output
    generator_pairs: int = 16
    generator_eval_tickets: int = 6


@dataclass(frozen=True)
class StreamTicket:
    id: str
    week: int
    subject: str
    body: str
    expected_articles: tuple[str, ...]


@dataclass
class CycleOutcome:
    """One weekly cycle of the demo and what agents saw in the weeks before and after it."""

    after_week: int
    ran_at: datetime  # the calendar time it stands for
    run: dict[str, Any]
    weeks_before: list[int] = field(default_factory=list)
    weeks_after: list[int] = field(default_factory=list)
    # (figure, before, after, change) on the tickets before and after it
    seen: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class DemoReport:
    tickets: int = 0
    threads: int = 0
    clicks: int = 0
    replies_sent: int = 0
    events: int = 0
    weeks: int = 0
    first_week: str = ""  # the Monday the first replayed week stands for
    cycles: list[CycleOutcome] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    duel_decisions: list[str] = field(default_factory=list)  # what the online test did
    duel: str = ""  # the online test running at the end
    settings_note: str = ""
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
        weeks = sorted({t.week for t in stream})
        calendar = PastWeeks(self.db, len(weeks))
        report.first_week = calendar.week_start(0).date().isoformat()
        self._ingest()
        clock = SimClock()
        slack, zendesk = stack.enter_context(self._sandboxes(clock))
        settings = self._product_settings(slack, zendesk)
        report.settings_note = self._settings_note(settings)
        web = stack.enter_context(self._web(settings))
        slack.app_url = f"{web.url}/slack/events"
        report.sandbox_url, report.zendesk_url = slack.base_url, f"{zendesk.url}/sandbox/zendesk"
        services = build_services(settings, self.db, build_deferrer(self.db.url))
        flywheel = flywheel_services(settings, self.db, services.slack)
        memory = memory_builder(settings, self.db)
        moved_before = 0
        setup.connect(
            services.zendesk,
            email=zendesk.agent_email,
            api_token=zendesk.api_token,
            public_url=web.url,
        )
        stack.enter_context(self._processes(settings))
        agents = self._agents(slack, clock, settings)
        cycle_after = cycle_weeks(weeks, self.options.cycles)
        self.say(
            f"{len(weeks)} weeks of tickets, replayed as the weeks from {report.first_week};"
            f" a cycle after week{'s' if len(cycle_after) > 1 else ''}"
            f" {', '.join(str(w) for w in cycle_after) or 'none'}"
        )
        last_cycle = -1
        for n, week in enumerate(weeks):
            started = time.monotonic()
            arriving = [t for t in stream if t.week == week]
            self._week(report, week, arriving, zendesk, agents)
            self._drain(zendesk)
            changed = self._decide_online(report, flywheel)
            calendar.settle(calendar.week_start(n))
            moved = self._memory_moved() - moved_before
            moved_before += moved
            remembered = memory.refresh()  # as the scheduler does every few minutes
            self.say(
                f"week {week}: earlier clicks moved a source on {moved} of its"
                f" {len(arriving)} cards"
                f" (ranked up, down or suggested by similar tickets); the feedback memory now"
                f" holds {remembered.entries} judged clicks ({remembered.dropped} left out by"
                " the judge)"
            )
            self.say(f"week {week} done in {time.monotonic() - started:.0f} s")
            if week in cycle_after:
                outcome = self._cycle(settings, week, calendar.cycle_time(n))
                outcome.weeks_before = [w for w in weeks if last_cycle < w <= week]
                report.cycles.append(outcome)
                last_cycle = week
                changed |= self._decide_online(report, flywheel)
                calendar.settle(calendar.cycle_time(n))
                decisions = outcome.run.get("decisions") or {}
                changed |= any(
                    decisions.get(kind, {}).get("promoted") for kind in ("reranker", "generator")
                )
            if changed and n < len(weeks) - 1:
                # workers rebuild their pipeline from the registry within seconds (a
                # retriever needs nothing: every search reads the live index)
                self.say("giving the worker a few seconds to load what changed")
                time.sleep(CHECK_EVERY_S + 2)
        for outcome in report.cycles:
            later = [c.after_week for c in report.cycles if c.after_week > outcome.after_week]
            end = later[0] if later else weeks[-1]
            outcome.weeks_after = [w for w in weeks if outcome.after_week < w <= end]
        report.weeks = len(weeks)
        report.cards = self._cards(report.cards)
        for outcome in report.cycles:
            before = [c for c in report.cards if c.week in outcome.weeks_before]
            after = [c for c in report.cards if c.week in outcome.weeks_after]
            outcome.seen = compare(before, after)
        duel = flywheel.online.state()
        report.duel = duel_line(summary(duel)) if duel else "no challenger drafts now"
        report.digest = self._digest(services, calendar.week_start(len(weeks) - 1))
        with self.db.connection() as conn:
            report.events = feedback_store.event_count(conn)
        return report

    def _ingest(self) -> None:

        self.say("ingesting the sample knowledge base")
        factory.ingestor(self.base, self.db).ingest_path(
            self.base.samples_dir / "kb", source="samples", max_bytes=self.base.max_document_bytes
        )
        _, embedder = factory.embedding_versions(self.base, self.db).live()
        where = encoders.describe(embedder.path, "embedder", factory.encoder_backend(self.base))
        self.say(f"the embedding model runs on {where}")

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
                "generator_max_pairs": self.options.generator_pairs,
                "generator_eval_tickets": self.options.generator_eval_tickets,
            }
        )

    def _settings_note(self, settings: Settings) -> str:
        """What the demo runs differently from the product's defaults, said up front."""
        defaults = Settings.model_fields
        changed = [
            f"{name.upper()}={getattr(settings, name)} (default {defaults[name].default})"
            for name in ("generator_max_pairs", "generator_eval_tickets", "challenger_share")
            if getattr(settings, name) != defaults[name].default
        ]
        return "demo settings: AITL_" + ", AITL_".join(changed) if changed else ""

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

    def _agents(self, slack, clock, settings: Settings) -> list[Any]:

        ids = [AGENT_ALICE, AGENT_BOB]
        for name in AGENT_NAMES[2 : self.options.agents]:
            user = f"U0{name.upper()}"
            slack.add_user(user, name, f"{name}@sandbox.example", real_name=name.title())
            slack.add_member(SUPPORT_CHANNEL, user)
            ids.append(user)
        slack.add_usergroup(AGENTS_GROUP, "agents", ids[: self.options.agents])
        policy = AgentPolicy(noise=self.options.noise, careless_share=self.options.careless)
        closing = PromptLibrary(settings.prompts_dir).text("closing.txt")
        return [
            SandboxAgent(
                slack,
                slack.base_url,
                self.db,
                user,
                policy,
                seed=self.options.seed + n,
                clock=clock,
                boilerplate=(closing,),
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
            refs[str(TicketRef.zendesk(created["id"]))] = (ticket, created["id"])
        report.tickets += len(tickets)
        slack = agents[0].sandbox
        sent = shown = 0
        # agents answer each card as it is posted, while the worker drafts the next ones
        for n, (ref, (channel, ts)) in enumerate(self._cards_as_shown(set(refs))):
            shown += 1
            ticket, ticket_id = refs[ref]
            card = card_of(
                slack.message(channel or SUPPORT_CHANNEL, ts), channel or SUPPORT_CHANNEL
            )
            if card is None:
                continue
            agent = agents[n % len(agents)]
            agent.clock.new_card()
            gold = self._gold(ticket)
            gap = None if ticket.expected_articles else f"No article covers this: {ticket.subject}"
            answered = agent.annotate(card, gold, gap)
            report.clicks += answered.clicks
            report.cards.append(
                Card(
                    card.draft_set_id,
                    week,
                    bool(gold),
                    bool(gold & set(card.sources)),
                    False,
                    False,
                    0,
                    0,
                )
            )
            if answered.text:  # the agent sends the draft it used: Zendesk tells us
                zendesk.add_comment(ticket_id, answered.text, public=True, author="agent")
                sent += 1
        report.threads += shown
        report.replies_sent += sent
        self.say(
            f"week {week}: {shown} threads, {sent} replies sent in Zendesk,"
            f" {report.clicks:,} clicks so far"
        )

    def _drain(self, zendesk) -> None:
        """Wait until Zendesk has delivered its webhooks and the worker has done its jobs, so
        the week's rows are all written before they move to their week."""
        zendesk.outbox.wait_idle(timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self.db.connection() as conn:
                if not waiting_jobs(conn):
                    return
            time.sleep(0.5)
        self.say("the worker still has jobs queued; going on")

    def _cards_as_shown(self, refs: set[str]) -> Iterator[tuple[str, tuple[str, str]]]:
        """Each ticket's thread (channel, ts) as soon as the worker has posted it; an error
        when none comes for ``card_timeout_s``."""
        seen: set[str] = set()
        deadline = time.monotonic() + self.options.card_timeout_s
        while len(seen) < len(refs):
            with self.db.connection() as conn:
                found = bot_store.shown_ticket_threads(conn, sorted(refs - seen))
            for ref in sorted(found):
                seen.add(ref)
                deadline = time.monotonic() + self.options.card_timeout_s
                yield ref, found[ref]
            if not found:
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{len(refs) - len(seen)} of {len(refs)} tickets got no Slack thread"
                        f" in {self.options.card_timeout_s:.0f} s; see the worker's log"
                        " (`aitl worker -v`)"
                    )
                time.sleep(0.5)

    def _gold(self, ticket: StreamTicket) -> set[int]:
        if not ticket.expected_articles:
            return set()

        with self.db.connection() as conn:
            return rag_store.live_chunk_ids_of_documents(conn, ticket.expected_articles)

    def _cycle(self, settings: Settings, week: int, at: datetime) -> CycleOutcome:

        self.say(f"the weekly cycle after week {week}: judging, retraining, evaluating, gating")
        report = Flywheel(settings, self.db, progress=lambda step: self.say(f"  {step}")).run(
            "demo"
        )
        if "judge_rules" in report.counts:
            evidence = evidence_line(report.counts.get("gate_evidence") or {})
            self.say(
                f"  the judge dropped {judge_summary(report.counts) or 'nothing'}; held-out"
                f" tickets (marks) before → after judging: {evidence}"
            )
        if redundancy_line(report.counts):
            self.say(f"  feedback memory: {redundancy_line(report.counts)}")
        for warning in report.warnings:
            self.say(f"  {warning}")
        run = {
            "status": report.status,
            "seconds": report.seconds,
            "metrics": report.metrics,
            "decisions": report.decisions,
            "error": report.error,
            "held_out": report.counts.get("eval_queries"),
        }
        return CycleOutcome(week, at, run)

    def _memory_moved(self) -> int:
        """Cards so far on which the feedback memory moved a source (what the cards say)."""
        with self.db.connection() as conn:
            return memory_figures(conn, None, datetime.now(UTC) + timedelta(days=3650))[
                "drafts_moved"
            ]

    def _decide_online(self, report: DemoReport, flywheel) -> bool:
        """The online A/B test, as the scheduler checks it: promote or retire the challenger
        once it has decided; admins are told in Slack. True when it acted."""
        line = flywheel.decide_duel()
        if line is None:
            return False
        report.duel_decisions.append(line)
        self.say(f"  {line}")
        return True

    def _cards(self, cards: list[Card]) -> list[Card]:
        """The demo's cards with what their agents answered, read back from the click log."""
        with self.db.connection() as conn:
            events = feedback_store.standing_events(conn, datetime.now(UTC) + timedelta(days=1))
        by_set: dict[int, list] = {}
        for event in events:
            by_set.setdefault(event.draft_set_id, []).append(event)
        found = []
        for card in cards:
            mine = by_set.get(card.draft_set_id, [])
            marks = [e for e in mine if e.kind == "relevance"]
            found.append(
                dataclasses.replace(
                    card,
                    used=any(e.kind == "adoption" and e.value in ("as_is", "edited") for e in mine),
                    missing=any(e.kind == "missing_knowledge" for e in mine)
                    or any(
                        e.kind == "adoption" and e.rationale.get("reason") == "missing_knowledge"
                        for e in mine
                    ),
                    relevant_marks=sum(e.value == "relevant" for e in marks),
                    marks=len(marks),
                )
            )
        return found

    def _digest(self, services, last_week: datetime) -> dict[str, Any]:
        self.say("the weekly digest of the last replayed week: to the managers and #support-leads")
        digest = services.slack.digest
        sent = digest.send(digest.window(last_week.date()))
        return {"sent": sent.sent, "skipped": sent.skipped, "week": str(sent.week_start)}


def cycle_weeks(weeks: Sequence[int], cycles: int) -> list[int]:
    """The weeks after which a cycle runs: ``cycles`` of them, evenly spread, never after the
    last week (nothing would come after it to show the effect)."""
    if cycles <= 0 or len(weeks) < 2:
        return []
    cycles = min(cycles, len(weeks) - 1)
    step = len(weeks) / (cycles + 1)
    return sorted({weeks[max(0, round(step * (k + 1)) - 1)] for k in range(cycles)})


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
