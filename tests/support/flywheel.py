"""A feedback window for flywheel tests: the sample tickets drafted by the real pipeline, shown,
and annotated by simulated agents through the recorder the Slack listeners use."""

from __future__ import annotations

import json
from collections.abc import Callable

from aitl.core.queue import build_app, build_deferrer
from aitl.core.settings import PROJECT_ROOT
from bot.recorder import FeedbackRecorder
from rag import factory
from rag import store as rag_store
from rag.models import Ticket
from sandboxes.agents.policy import AgentPolicy, SimulatedAgent, show

TICKETS = PROJECT_ROOT / "samples" / "tickets.jsonl"


def sample_tickets(variants: int = 3) -> list[tuple[str, Ticket, list[str]]]:
    """Each sample ticket as written, as its body alone and as its subject alone."""
    found = []
    for line in TICKETS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        forms = [
            Ticket(record["subject"], record["body"]),
            Ticket("", record["body"]),
            Ticket("", record["subject"]),
        ][:variants]
        for n, ticket in enumerate(forms):
            found.append((f"sample:{record['id']}:{n}", ticket, record["expected_articles"]))
    return found


def gold_chunks(db, articles: list[str]) -> set[int]:
    with db.connection() as conn:
        return rag_store.live_chunk_ids_of_documents(conn, articles)


def annotate_samples(
    settings,
    db,
    *,
    agents: int = 2,
    policy: AgentPolicy | None = None,
    variants: int = 3,
    pipeline=None,
) -> int:
    """Draft (with ``pipeline``, else the settings' champion in two styles), show and annotate
    every sample ticket; returns the number of events stored."""
    pipeline = pipeline or factory.pipeline(settings, db)
    recorder = FeedbackRecorder(db, build_deferrer(db.url))
    team = [
        SimulatedAgent(f"USIM{i}", recorder, policy or AgentPolicy(noise=0.0), seed=i)
        for i in range(agents)
    ]
    stored = 0
    for n, (ref, ticket, articles) in enumerate(sample_tickets(variants)):
        result = pipeline.draft(ticket)
        with db.connection() as conn:
            set_id = rag_store.save_draft_set(conn, ref, ticket.query_text(), result)
        shown = show(db, set_id, ref)
        stored += team[n % len(team)].annotate(shown, gold_chunks(db, articles))
    return stored


def run_flywheel_worker(settings, db, slack=None, *, services=None) -> None:
    """Run the queued flywheel jobs to completion, as `aitl worker` would; with ``slack`` (the
    bot's services) the admins who asked for model changes are told in Slack, as there;
    ``services``: the flywheel's own, e.g. telling into a list."""
    from aitl.app.wiring import flywheel_services
    from flywheel import jobs as flywheel_jobs

    flywheel = services or flywheel_services(settings, db, slack)
    build_app(db.url, [flywheel_jobs.blueprint()]).run_worker(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"flywheel": flywheel},
    )


def telling_worker(settings, db) -> Callable[[], list[tuple[str, str]]]:
    """A worker run: it runs the queued flywheel jobs and returns who was told what (the admins
    are UADMIN and UOTHER, listed twice over as a directory might)."""
    from flywheel.services import FlywheelServices

    told: list[tuple[str, str]] = []
    services = FlywheelServices(
        settings,
        db,
        tell=lambda user, text: told.append((user, text)),
        admins=lambda: ["UADMIN", "UOTHER", "UADMIN"],
    )

    def work() -> list[tuple[str, str]]:
        told.clear()
        run_flywheel_worker(settings, db, services=services)
        return list(told)

    return work
