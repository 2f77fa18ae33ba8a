"""Flywheel benchmark: simulated agents click on dstc11 tickets, one cycle retrains, gold decides.

Run ``.venv/bin/python benchmarks/flywheel.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# This script is named like the product's ``flywheel`` package, and Python puts the script's
# folder first on the import path, where ``import flywheel`` would find this file. The project
# root goes in front of it (``benchmarks`` is a namespace package there).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.queue import build_deferrer
from aitl.core.settings import Settings
from benchmarks import kb_pipeline, layouts
from bot.recorder import FeedbackRecorder
from flywheel import cycle
from flywheel import store as feedback_store
from flywheel.evaluation import EvalQuery, RetrieverEvaluator
from flywheel.events import StoredFeedback
from flywheel.exceptions import FlywheelError
from flywheel.judge import LLM_RULE, RULES, Judge, JudgeContext, RuleJudge, Verdict
from flywheel.registry import Registry
from flywheel.reports import decided_by
from rag import factory
from rag import store as rag_store
from rag.models import Message, Ticket
from rag.pipeline import DraftPipeline
from sandboxes.agents.policy import AgentPolicy, SimulatedAgent, preference, sent_draft, show

DSTC_DIR = kb_pipeline.DSTC_DIR
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS = RESULTS_DIR / "flywheel.json"
STATE = "flywheel-benchmark.json"  # in the data dir: what --reuse needs (layout, draft sets)
SEED = 20240611
HOLDOUT = 0.1  # the last share of tickets, never annotated, scored against dstc11 gold
EVAL_DEPTH = 100  # at least: recall@AITL_RETRIEVE_K may need deeper
GOAL_RECALL_UPLIFT = 0.117  # the paper's +11.7% recall@75
GOAL_PRECISION_UPLIFT = 0.148  # the paper's +14.8% precision@8
GOAL_CYCLE_S = 15 * 60.0
# the judge's goal on relevance marks: drop at least this share of the wrong ones…
GOAL_WRONG_DROPPED = 0.5
# …and at most this share of the right ones (on every layout)
GOAL_RIGHT_DROPPED = 0.05
JUDGES = ("rules", "off", "llm")  # as AITL_JUDGE
TRAINED_KINDS = ("retriever", "reranker")

console = kb_pipeline.console
# the per-rule tables are wide: in a log they keep one line per rule
wide = Console(width=None if sys.stdout.isatty() else 150)


# --- tickets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DstcTicket:
    """One knowledge-seeking turn of dstc11 val, as a support ticket with its gold knowledge."""

    instance: int  # index in val/logs.json
    dialogue: int  # dialogues numbered by first appearance in the file
    ticket: Ticket
    gold: tuple[str, ...]  # knowledge items named by labels[instance].knowledge (layouts.item_id)

    @property
    def ticket_ref(self) -> str:
        # every turn of a dialogue is one ticket's draft set, so the cycle's own 90/10 split
        # keeps dialogues whole as well
        return f"dstc11:val:dialogue:{self.dialogue}"


def load_tickets(limit: int | None) -> list[DstcTicket]:
    """Target instances dialogue by dialogue (file order), whole dialogues up to ``limit``."""
    logs = json.loads((DSTC_DIR / "val" / "logs.json").read_text(encoding="utf-8"))
    labels = json.loads((DSTC_DIR / "val" / "labels.json").read_text(encoding="utf-8"))
    dialogues: dict[str, list[int]] = {}
    for index, log in enumerate(logs):
        # dstc11 inserts knowledge turns into copies of one dialogue: they share its opening
        dialogues.setdefault(_normalised(log[0]["text"]), []).append(index)
    tickets: list[DstcTicket] = []
    for number, members in enumerate(dialogues.values()):
        own = [_dstc_ticket(i, number, logs[i], labels[i]) for i in members if labels[i]["target"]]
        if limit is not None and len(tickets) + len(own) > limit:
            break
        tickets.extend(own)
    return tickets


def _normalised(text: str) -> str:
    return " ".join(text.split()).lower()


def _dstc_ticket(index: int, dialogue: int, log: list[dict], label: dict) -> DstcTicket:
    body = kb_pipeline._last_user_turn(log)
    thread = tuple(
        Message(author="customer" if t["speaker"] == "U" else "agent", body=t["text"])
        for t in log[:-1]
    )
    ticket = Ticket(subject="", body=body, thread=thread, external_id=f"dstc11:val:{index}")
    gold = tuple(layouts.item_id(k) for k in label["knowledge"])
    return DstcTicket(index, dialogue, ticket, gold)


def split(tickets: Sequence[DstcTicket], holdout: float) -> tuple[list, list]:
    """The first (1 - holdout) of tickets to annotate, the rest to test; cut between dialogues."""
    wanted = round(len(tickets) * (1 - holdout))
    cut = wanted
    while 0 < cut < len(tickets) and tickets[cut].dialogue == tickets[cut - 1].dialogue:
        cut += 1
    return list(tickets[:cut]), list(tickets[cut:])


def gold_of(ticket: DstcTicket, chunks: dict[str, frozenset[int]]) -> frozenset[int]:
    """The ticket's gold chunks, from each knowledge item's chunks in the layout
    (``layouts.gold_chunks``)."""
    return frozenset(c for external_id in ticket.gold for c in chunks.get(external_id, ()))


# --- annotation --------------------------------------------------------------------------


@dataclass
class AnnotationFigures:
    tickets: int
    dialogues: int
    agents: int
    events_stored: int
    events_by_kind: dict[str, int]
    seconds: float
    draft_ms_mean: float
    gold_shown_share: float  # gold chunks among the cited sources agents saw
    agent_noise: dict[str, float] = field(default_factory=dict)  # share of marks each flips
    gold_by_set: dict[int, frozenset[int]] = field(default_factory=dict, repr=False)
    set_instances: dict[int, int] = field(default_factory=dict, repr=False)  # → dstc instance


def annotate(
    settings: Settings,
    db: Database,
    tickets: Sequence[DstcTicket],
    chunks: dict[str, frozenset[int]],
    args: argparse.Namespace,
    *,
    pipeline: DraftPipeline | None = None,
    team: Sequence[SimulatedAgent] | None = None,
) -> AnnotationFigures:
    """Draft, show and click through every ticket, agents taking them in turn; by default
    with the shipped models and no feedback memory, a fresh team of ``make_team``."""
    pipeline = pipeline or factory.pipeline(settings, db)
    team = team or make_team(db, args)
    started = time.perf_counter()
    stored, draft_s, gold_shown, shown_total = 0, 0.0, 0, 0
    gold_by_set: dict[int, frozenset[int]] = {}
    set_instances: dict[int, int] = {}
    with kb_pipeline._progress() as progress:
        task = progress.add_task("annotate", total=len(tickets), rate="")
        for n, item in enumerate(tickets):
            mark = time.perf_counter()
            result = pipeline.draft(item.ticket)
            draft_s += time.perf_counter() - mark
            with db.connection() as conn:
                set_id = rag_store.save_draft_set(
                    conn, item.ticket_ref, item.ticket.query_text(), result
                )
            shown = show(db, set_id, item.ticket_ref)
            gold = gold_of(item, chunks)
            gold_by_set[set_id] = gold
            set_instances[set_id] = item.instance
            gold_shown += len(set(shown.sources) & gold)
            shown_total += len(shown.sources)
            nearby = [c.chunk_id for c in result.retrieved]
            stored += team[n % len(team)].annotate(shown, gold, nearby)
            progress.update(task, advance=1, rate=f"{stored:,} events")
    with db.connection() as conn:
        kinds = Counter(e.kind for e in feedback_store.events(conn))
    return AnnotationFigures(
        tickets=len(tickets),
        dialogues=len({t.dialogue for t in tickets}),
        agents=args.agents,
        events_stored=stored,
        events_by_kind=dict(sorted(kinds.items())),
        seconds=round(time.perf_counter() - started, 1),
        draft_ms_mean=round(draft_s * 1000 / max(len(tickets), 1), 1),
        gold_shown_share=round(gold_shown / max(shown_total, 1), 4),
        gold_by_set=gold_by_set,
        set_instances=set_instances,
        agent_noise={agent.agent_id: agent.policy.noise for agent in team},
    )


def make_team(db: Database, args: argparse.Namespace) -> list[SimulatedAgent]:
    """``args.agents`` simulated agents recording through the bot's recorder, each with its
    own noise (``agent_noise``) and seed."""
    recorder = FeedbackRecorder(db, build_deferrer(db.url))
    return [
        SimulatedAgent(
            f"UBENCH{i}",
            recorder,
            AgentPolicy(
                noise=noise, careless_share=args.careless, missing_noise=args.missing_noise
            ),
            seed=args.seed + i,
        )
        for i, noise in enumerate(agent_noise(args.noise, args.noise_spread, args.agents))
    ]


def agent_noise(mean: float, spread: float, agents: int) -> list[float]:
    """Each agent's share of flipped marks: evenly from mean - spread (the most careful) to
    mean + spread, so the team's mean stays ``mean``; spread 0 makes them all alike."""
    if agents < 2 or spread == 0:
        return [mean] * agents
    return [
        round(min(1.0, max(0.0, mean - spread + 2 * spread * i / (agents - 1))), 4)
        for i in range(agents)
    ]


# --- the cycles --------------------------------------------------------------------------


@dataclass
class CycleFigures:
    judge: str
    run_id: int
    status: str
    wall_seconds: float
    report_seconds: float
    counts: dict[str, Any] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_cycle(settings: Settings, db: Database) -> CycleFigures:
    """One timed ``Flywheel.run``: judge, train, evaluate, gate, promote (and re-embed)."""
    started = time.perf_counter()

    def step(text: str) -> None:
        console.print(f"  [dim]{time.perf_counter() - started:6.0f} s  {settings.judge}: {text}")

    report = cycle.Flywheel(settings, db, progress=step).run("benchmark")
    return CycleFigures(
        judge=settings.judge,
        run_id=report.run_id,
        status=report.status,
        wall_seconds=round(time.perf_counter() - started, 1),
        report_seconds=report.seconds,
        counts=report.counts,
        decisions=report.decisions,
        metrics=report.metrics,
        artefacts={k: str(v) for k, v in report.artefacts.items()},
        error=report.error,
    )


def roll_back(settings: Settings, db: Database, figures: CycleFigures) -> list[str]:
    """Put the shipped retriever and reranker back live, so the next cycle starts as this one."""
    registry = Registry(db, factory.embedding_versions(settings, db))
    rolled = []
    for kind in TRAINED_KINDS:
        if figures.decisions.get(kind, {}).get("promoted"):
            registry.rollback(kind, "benchmark: the judge-off cycle starts from shipped models")
            rolled.append(kind)
    return rolled


# --- the judge against the simulation's truth ----------------------------------------------

MARKS = ("relevant", "not relevant", "missing knowledge", "preference", "adoption")
RELEVANCE = "relevance marks"  # "relevant" and "not relevant" together
JUDGE_ROW = "judge"  # the judge as a whole: the events it dropped (any rule)
RELEVANCE_MARKS = ("relevant", "not relevant")


def mark_of(event: StoredFeedback) -> str | None:
    """The kind of mark an event is, as the truth tables count it."""
    if event.kind == "relevance":
        return "relevant" if event.value == "relevant" else "not relevant"
    return {
        "missing_knowledge": "missing knowledge",
        "preference": "preference",
        "adoption": "adoption",
    }.get(event.kind)


def truth_of(
    event: StoredFeedback, gold: frozenset[int], cited: dict[str, Sequence[int]]
) -> bool | None:
    """Whether the event says what the simulation knows to be true (None: nothing to check).

    Relevance and missing knowledge by the gold labels; a preference or an adoption by what a
    careful agent clicks for these drafts and this gold (``sandboxes.agents.policy``: prefer
    the draft citing more gold, a tie, or both bad; send the preferred draft as it is, or the
    first of two equally good ones, when it cites gold; else unused for lack of knowledge).
    """
    mark = mark_of(event)
    if mark in ("relevant", "not relevant", "missing knowledge"):
        if not event.chunk_ids:
            return None
        in_gold = event.chunk_ids[0] in gold
        return not in_gold if mark == "not relevant" else in_gold
    if mark == "preference":
        return event.value == preference(dict(cited), set(gold))
    if mark == "adoption":
        sent = sent_draft(dict(cited), set(gold), preference(dict(cited), set(gold)))
        if sent is None:
            return event.value == "not_used"
        return event.value == "as_is" and event.rationale.get("label") == sent
    return None


def event_truths(
    events: Sequence[StoredFeedback],
    sets: dict[int, rag_store.DraftSetInfo],
    gold_by_set: dict[int, frozenset[int]],
) -> dict[int, tuple[str, bool]]:
    """Event id → (its kind of mark, whether it is right), for the events on annotated cards."""
    found = {}
    for e in events:
        info = sets.get(e.draft_set_id)
        if e.draft_set_id not in gold_by_set or info is None:
            continue
        cited = {label: list(draft.citations) for label, draft in info.drafts.items()}
        right = truth_of(e, gold_by_set[e.draft_set_id], cited)
        mark = mark_of(e)
        if right is not None and mark is not None:
            found[e.id] = (mark, right)
    return found


def rules_run(judge: Judge) -> list[str]:
    """The rules a judge runs, by the names its verdicts give: none for ``off``; the LLM's
    own verdicts count as one more rule."""
    if isinstance(judge, RuleJudge):
        return [rule for rule in RULES if rule not in judge.settings.disabled]
    inner = getattr(judge, "rules", None)
    if isinstance(inner, RuleJudge):
        return [*rules_run(inner), LLM_RULE]
    return []


def doubted_by(verdicts: Sequence[Verdict], rules: Sequence[str]) -> dict[str, set[int]]:
    """The events each rule doubted (every rule of ``rules``, and any other a verdict names),
    and under ``JUDGE_ROW`` the events the judge dropped."""
    found: dict[str, set[int]] = {rule: set() for rule in rules}
    dropped = set()
    for v in verdicts:
        for rule in v.rules:
            found.setdefault(rule, set()).add(v.event_id)
        if not v.keep:
            dropped.add(v.event_id)
    found[JUDGE_ROW] = dropped
    return found


def against_truth(
    truths: dict[int, tuple[str, bool]], doubted: dict[str, set[int]]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per rule (and the judge), per kind of mark (and both relevance values together): how
    many marks were wrong and right, and how many of each the rule doubted."""
    found = {}
    for name, ids in doubted.items():
        counts = {
            mark: dict.fromkeys(("wrong", "wrong_dropped", "right", "right_dropped"), 0)
            for mark in (*MARKS, RELEVANCE)
        }
        for event_id, (mark, right) in truths.items():
            truth = "right" if right else "wrong"
            for counted in (mark, RELEVANCE) if mark in RELEVANCE_MARKS else (mark,):
                counts[counted][truth] += 1
                counts[counted][f"{truth}_dropped"] += event_id in ids
        found[name] = counts
    return found


def relevance_goals(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """The judge's goal on relevance marks, both values together and each: it drops at least
    ``GOAL_WRONG_DROPPED`` of the wrong marks and at most ``GOAL_RIGHT_DROPPED`` of the right
    ones (``pass`` None when there is no wrong or no right mark to judge it on)."""
    found = {}
    for mark in (RELEVANCE, *RELEVANCE_MARKS):
        c = counts[mark]
        wrong = _ratio(c["wrong_dropped"], c["wrong"])
        right = _ratio(c["right_dropped"], c["right"])
        verdict = None
        if wrong is not None and right is not None:
            verdict = wrong >= GOAL_WRONG_DROPPED and right <= GOAL_RIGHT_DROPPED
        found[mark] = {
            "wrong_dropped": wrong,
            "right_dropped": right,
            "goal": {
                "wrong_dropped_at_least": GOAL_WRONG_DROPPED,
                "right_dropped_at_most": GOAL_RIGHT_DROPPED,
            },
            "pass": verdict,
        }
    return found


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def judge_against_truth(
    db: Database, run_id: int, gold_by_set: dict[int, frozenset[int]]
) -> dict[str, dict[str, dict[str, int]]]:
    """A cycle's judge against the simulation's truth, per rule: the verdicts the run saved
    (``judge_verdicts``, with every rule that doubted each event) on the events it judged."""
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT event_id, keep, reason, judge, rules FROM judge_verdicts WHERE run_id = %s",
            (run_id,),
        ).fetchall()
        judged = {row[0] for row in rows}
        events = [e for e in feedback_store.events(conn) if e.id in judged]
    verdicts = [
        Verdict(event_id, keep, reason, judge, tuple(rules or ()))
        for event_id, keep, reason, judge, rules in rows
    ]
    context = cycle.load_context(db, events)
    truths = event_truths(events, context.sets, gold_by_set)
    return against_truth(truths, doubted_by(verdicts, list(RULES)))


def judge_only(
    settings: Settings, db: Database, gold_by_set: dict[int, frozenset[int]], args
) -> dict[str, Any]:
    """Every judge of ``--judges`` on the standing events, as a cycle would read them now,
    against the simulation's truth; nothing is trained and no verdict is saved."""
    with db.connection() as conn:
        events = feedback_store.standing_events(conn, datetime.now(UTC))
    context = cycle.load_context(db, events)
    truths = event_truths(events, context.sets, gold_by_set)
    found: dict[str, Any] = {}
    rules_verdicts = None
    for name in args.judges:
        if name == "llm":
            continue  # on a sample, once the rules have run (below)
        judge = cycle.default_judge(settings.model_copy(update={"judge": name}))
        started = time.perf_counter()
        verdicts = judge.judge(events, context)
        seconds = round(time.perf_counter() - started, 1)
        console.print(f"  [dim]judge {name}: {len(events):,} events in {seconds:.1f} s")
        counts = against_truth(truths, doubted_by(verdicts, rules_run(judge)))
        found[name] = {
            "judge": judge.name,
            "seconds": seconds,
            "rules_ran": list(judge.ran(events, context)),
            "against_truth": counts,
            "goal": relevance_goals(counts[JUDGE_ROW]),
        }
        if name == "rules":
            rules_verdicts = verdicts
    if "llm" in args.judges:
        if rules_verdicts is None:  # the LLM is compared with the rules on the same events
            rules = cycle.default_judge(settings.model_copy(update={"judge": "rules"}))
            rules_verdicts = rules.judge(events, context)
        found["llm"] = judge_llm_sample(settings, events, context, truths, rules_verdicts, args)
    return {
        "events": len(events),
        "events_with_truth": len(truths),
        "judges": found,
    }


STRATIFIED = {"relevance": RELEVANCE_MARKS, "preference": ("preference",)}


def stratified_sample(
    truths: dict[int, tuple[str, bool]], per_kind: int, seed: int
) -> dict[str, list[int]]:
    """Up to ``per_kind`` relevance events and as many preference events, seeded, taken in
    turn from each stratum (the mark and whether it is right), so rare wrong marks are not
    left to chance; a stratum that runs out leaves its turns to the others."""
    rng = random.Random(seed)
    sample = {}
    for kind, marks in STRATIFIED.items():
        strata: dict[tuple[str, bool], list[int]] = {}
        for event_id, (mark, right) in sorted(truths.items()):
            if mark in marks:
                strata.setdefault((mark, right), []).append(event_id)
        queues = [strata[key] for key in sorted(strata)]
        for queue in queues:
            rng.shuffle(queue)
        picked: list[int] = []
        while len(picked) < per_kind and any(queues):
            for queue in queues:
                if queue and len(picked) < per_kind:
                    picked.append(queue.pop())
        sample[kind] = sorted(picked)
    return sample


def llm_against_truth(
    sample: dict[str, list[int]],
    truths: dict[int, tuple[str, bool]],
    llm_dropped: set[int],
    answered: set[int],
    rules_dropped: set[int],
) -> dict[str, dict[str, Any]]:
    """On the sampled events, per kind: how often the LLM alone, the rules, and both (what
    ``AITL_JUDGE=llm`` does: the rules, then the LLM on what they keep) agree with the truth
    (a wrong mark dropped, a right one kept), and per stratum what each dropped."""
    found = {}
    for kind, ids in sample.items():
        agree: Counter[str] = Counter()
        strata: dict[str, Counter[str]] = {}
        for event_id in ids:
            mark, right = truths[event_id]
            by_llm, by_rules = event_id in llm_dropped, event_id in rules_dropped
            for name, dropped in (
                ("llm", by_llm),
                ("rules", by_rules),
                ("llm + rules", by_llm or by_rules),
            ):
                agree[name] += dropped != right
            stratum = strata.setdefault(f"{mark}, {'right' if right else 'wrong'}", Counter())
            stratum["events"] += 1
            stratum["llm_answered"] += event_id in answered
            stratum["llm_dropped"] += by_llm
            stratum["rules_dropped"] += by_rules
        found[kind] = {
            "events": len(ids),
            "llm_answered": sum(event_id in answered for event_id in ids),
            "agreement": {
                name: _ratio(agree[name], len(ids)) for name in ("llm", "rules", "llm + rules")
            },
            "strata": {name: dict(c) for name, c in sorted(strata.items())},
        }
    return found


def judge_llm_sample(
    settings: Settings,
    events: Sequence[StoredFeedback],
    context: JudgeContext,
    truths: dict[int, tuple[str, bool]],
    rules_verdicts: Sequence[Verdict],
    args,
) -> dict[str, Any]:
    """The LLM judge on a stratified sample, beside the rules on the same events; skipped,
    and said why, when no chat model can be built or it fails."""
    try:  # every rule off: the LLM's own verdict on every sampled event
        judge = cycle.default_judge(
            settings.model_copy(update={"judge": "llm", "judge_disabled_rules": list(RULES)})
        )
    except FlywheelError as exc:
        console.print(f"[yellow]judge llm skipped:[/] {exc}")
        return {"skipped": str(exc)}
    sample = stratified_sample(truths, args.llm_sample, args.seed)
    wanted = {event_id for ids in sample.values() for event_id in ids}
    chosen = [e for e in events if e.id in wanted]
    started = time.perf_counter()
    try:
        verdicts = judge.judge(chosen, context)
    except Exception as exc:  # a chat model that fails must not cost the rules' figures
        console.print(f"[yellow]judge llm failed:[/] {type(exc).__name__}: {exc}")
        return {"skipped": f"the LLM judge failed: {type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - started, 1)
    console.print(f"  [dim]judge llm: {len(chosen):,} sampled events in {seconds:.1f} s")
    answered = {v.event_id for v in verdicts if v.judge == judge.name}
    if not answered:
        console.print(
            "[yellow]judge llm: no sampled event got a readable verdict from the LLM; every"
            " verdict below is the rules' (all turned off here: keep)[/]"
        )
    return {
        "judge": judge.name,
        "seconds": seconds,
        "events": len(chosen),
        "llm_answered": len(answered),
        "seconds_per_event": round(seconds / max(len(chosen), 1), 2),
        "sample_per_kind": args.llm_sample,
        "against_truth": llm_against_truth(
            sample,
            truths,
            {v.event_id for v in verdicts if not v.keep and v.event_id in answered},
            answered,
            {v.event_id for v in rules_verdicts if not v.keep},
        ),
    }


def rule_tables(
    found: dict[str, dict[str, dict[str, int]]], title: str, ran: Sequence[str] | None = None
) -> list[Table]:
    """Per rule and for the judge as a whole, how many wrong and right marks it doubted: one
    table for the relevance marks, one for the others; a rule not in ``ran`` (when given) is
    marked as not run (off_topic, say, with too few agreed marks to calibrate on)."""
    tables = []
    first = next(iter(found.values()))
    for group, marks in (
        ("relevance marks", (*RELEVANCE_MARKS, RELEVANCE)),
        ("other marks", ("missing knowledge", "preference", "adoption")),
    ):
        table = Table(title=f"{title}: {group}")
        table.add_column("rule", justify="left", no_wrap=True)
        for mark in marks:
            name = "both" if mark == RELEVANCE else mark
            for truth in ("wrong", "right"):
                table.add_column(f"{name}: {truth}\nof {first[mark][truth]:,}", justify="right")
        for rule, counts in found.items():
            cells = [
                f"{counts[mark][f'{truth}_dropped']:,} "
                f"({_share(counts[mark][f'{truth}_dropped'], counts[mark][truth])})"
                for mark in marks
                for truth in ("wrong", "right")
            ]
            label = "judge (any rule)" if rule == JUDGE_ROW else rule
            if ran is not None and rule not in (JUDGE_ROW, *ran):
                label += " (not run)"
            table.add_row(label, *cells)
        tables.append(table)
    return tables


def judge_goal_table(goals_by_judge: dict[str, dict[str, dict[str, Any]]], layout: str) -> Table:
    table = Table(
        title=f"goal ({layout} layout): the judge drops ≥ {GOAL_WRONG_DROPPED:.0%} of the wrong"
        f" relevance marks and ≤ {GOAL_RIGHT_DROPPED:.0%} of the right ones"
    )
    for name, justify in (
        ("judge", "left"),
        ("marks", "left"),
        ("wrong dropped", "right"),
        ("right dropped", "right"),
        ("verdict", "center"),
    ):
        table.add_column(name, justify=justify)
    for judge, goals in goals_by_judge.items():
        for mark, goal in goals.items():
            table.add_row(
                judge,
                "relevance (both)" if mark == RELEVANCE else mark,
                _percent_or_na(goal["wrong_dropped"]),
                _percent_or_na(goal["right_dropped"]),
                "n/a" if goal["pass"] is None else kb_pipeline._verdict(goal["pass"]),
            )
    return table


def _percent_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def llm_table(found: dict[str, Any]) -> Table:
    table = Table(title=f"judge llm ({found['judge']}) on a stratified sample, beside the rules")
    for name, justify in (
        ("kind", "left"),
        ("stratum", "left"),
        ("events", "right"),
        ("llm answered", "right"),
        ("llm dropped", "right"),
        ("rules dropped", "right"),
    ):
        table.add_column(name, justify=justify)
    for kind, figures in found["against_truth"].items():
        for stratum, c in figures["strata"].items():
            events = c.get("events", 0)
            table.add_row(
                kind,
                stratum,
                f"{events:,}",
                f"{c.get('llm_answered', 0):,}",
                f"{c.get('llm_dropped', 0):,} ({_share(c.get('llm_dropped', 0), events)})",
                f"{c.get('rules_dropped', 0):,} ({_share(c.get('rules_dropped', 0), events)})",
            )
        agree = figures["agreement"]
        table.add_row(
            kind,
            f"agree with the truth (llm + rules: {_percent_or_na(agree['llm + rules'])})",
            f"{figures['events']:,}",
            f"{figures['llm_answered']:,}",
            _percent_or_na(agree["llm"]),
            _percent_or_na(agree["rules"]),
        )
    return table


def agents_table(noise: dict[str, float], cycles: dict[str, CycleFigures]) -> Table:
    """Each simulated agent's noise beside the reliability weight the judge-on cycle gave them."""
    weights = cycles["rules"].counts.get("agents", {})
    table = Table(title="agents: noise given vs reliability estimated (judge rules)")
    for column in ("agent", "marks flipped", "reliability weight"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent, share in sorted(noise.items()):
        weight = weights.get(agent)
        table.add_row(agent, f"{share:.0%}", "—" if weight is None else f"{weight:.3f}")
    return table


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "—"


# --- evaluation against gold -------------------------------------------------------------


@dataclass
class ModelRow:
    name: str
    retriever: str
    reranker: str | None
    metrics: dict[str, float]
    queries: int


def held_out_evaluator(
    settings: Settings,
    db: Database,
    test: Sequence[DstcTicket],
    chunks: dict[str, frozenset[int]],
) -> RetrieverEvaluator:
    """Exact search over the whole knowledge base for the held-out tickets, gold from dstc11:
    the paper's metrics, and the gate's at the drafts' depths (AITL_RETRIEVE_K, AITL_CONTEXT_K)."""
    queries = [
        EvalQuery(f"dstc11:{t.instance}", t.ticket.query_text(), gold_of(t, chunks)) for t in test
    ]
    return RetrieverEvaluator(
        cycle.corpus(db),
        queries,
        k=max(EVAL_DEPTH, settings.retrieve_k),
        retrieve_k=settings.retrieve_k,
        context_k=settings.context_k,
        backend=factory.encoder_backend(settings),  # as the product's cycle evaluates
    )


def evaluate(
    settings: Settings,
    evaluator: RetrieverEvaluator,
    cycles: dict[str, CycleFigures],
    *,
    live_only: bool = False,
) -> list[ModelRow]:
    """Base, each cycle's artefacts (promoted or not), and the model set live after its gate;
    with ``live_only``, just the live sets (what a repeat with another training seed adds).

    The live row is what the next drafts use, so the goals are read from it: a challenger
    the gate refused is reported, but it never reaches an agent.
    """
    base = settings.embedding_model
    candidates = [] if live_only else [("base (shipped MiniLM)", base, None)]
    for judge, figures in cycles.items():
        retriever = figures.artefacts.get("retriever", base)
        reranker = figures.artefacts.get("reranker")
        if not live_only:
            candidates.append((f"judge {judge}: retriever", retriever, None))
            candidates.append((f"judge {judge}: retriever + reranker", retriever, reranker))
        candidates.append((live_row(judge), *_live_models(figures, base)))
    rows = []
    scored: dict[tuple[str, str | None], tuple[dict[str, float], int]] = {}
    for name, retriever, reranker in candidates:
        key = (str(retriever), reranker)
        if key not in scored:
            console.print(f"  [dim]evaluating {name}")
            result = evaluator.evaluate(
                retriever,
                reranker_path=reranker,
                rerank_k=settings.retrieve_k,
                cosine_weight=settings.reranker_cosine_weight,
            )
            scored[key] = (result.metrics, result.queries)
        metrics, count = scored[key]
        rows.append(ModelRow(name, str(retriever), reranker, metrics, count))
    return rows


def live_row(judge: str) -> str:
    return f"judge {judge}: live after the gate"


def _live_models(figures: CycleFigures, base: str) -> tuple[str, str | None]:
    """The retriever and reranker the cycle left live: promoted artefacts, else the base."""

    def promoted(kind: str) -> str | None:
        if figures.decisions.get(kind, {}).get("promoted"):
            return figures.artefacts.get(kind)
        return None

    return promoted("retriever") or base, promoted("reranker")


def uplift(after: float, before: float) -> float | None:
    return (after - before) / before if before else None


def live_by_judge(rows: list[ModelRow]) -> dict[str, dict[str, float]]:
    """The live rows' metrics by judge setting: {"rules": {...}, "off": {...}}."""
    return {
        judge: row.metrics
        for row in rows
        for judge in ("rules", "off")
        if row.name == live_row(judge)
    }


def judge_difference(live: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Judge on minus off, live after the gate, per training seed and over them all.

    Both cycles of a seed train on the same clicks with the same seed, so the pairs differ
    only by the judge; the spread over seeds is what one run can show by chance.
    """
    found = {}
    for metric in next(iter(live.values()))["rules"]:  # the gate's metrics, then the paper's
        on = [by_judge["rules"][metric] for by_judge in live.values()]
        off = [by_judge["off"][metric] for by_judge in live.values()]
        gaps = [a - b for a, b in zip(on, off, strict=True)]
        sd = statistics.stdev(gaps) if len(gaps) > 1 else None
        found[metric] = {
            "per_seed": dict(zip((str(seed) for seed in live), gaps, strict=True)),
            "mean_on": statistics.fmean(on),
            "mean_off": statistics.fmean(off),
            "mean": statistics.fmean(gaps),
            "sd": sd,
            "standard_error": None if sd is None else sd / len(gaps) ** 0.5,
            "on_ahead": sum(gap > 0 for gap in gaps),
            "seeds": len(gaps),
        }
    return found


def goals(
    rows: list[ModelRow], cycles: dict[str, CycleFigures], difference: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The paper's uplifts and the cycle time from the first training seed; judge on vs off
    from the means over every seed (with one seed, that seed's pair)."""
    by_name = {row.name: row.metrics for row in rows}
    base = by_name["base (shipped MiniLM)"]
    on = by_name[live_row("rules")]
    recall_up = uplift(on["recall@75"], base["recall@75"])
    precision_up = uplift(on["precision@8"], base["precision@8"])
    cycle_s = cycles["rules"].wall_seconds
    return {
        "recall@75_uplift": {
            "goal": GOAL_RECALL_UPLIFT,
            "measured": recall_up,
            "pass": recall_up is not None and recall_up >= GOAL_RECALL_UPLIFT,
        },
        "precision@8_uplift": {
            "goal": GOAL_PRECISION_UPLIFT,
            "measured": precision_up,
            "pass": precision_up is not None and precision_up >= GOAL_PRECISION_UPLIFT,
        },
        **{
            f"judge_beats_no_judge_{metric}": {
                "measured": [difference[metric]["mean_on"], difference[metric]["mean_off"]],
                "seeds": difference[metric]["seeds"],
                "standard_error": difference[metric]["standard_error"],
                "pass": difference[metric]["mean"] > 0,
            }
            for metric in ("recall@75", "precision@8")
        },
        "cycle_seconds": {
            "goal": GOAL_CYCLE_S,
            "measured": cycle_s,
            "pass": cycles["rules"].status == "succeeded" and cycle_s <= GOAL_CYCLE_S,
        },
    }


# --- report ------------------------------------------------------------------------------


def metrics_table(rows: list[ModelRow]) -> Table:
    """Every metric, the gate's (at the drafts' depths) first and then the paper's, with the
    uplifts over the base in recall and precision at both depths."""
    table = Table(title="held-out dstc11 tickets, scored against gold")
    table.add_column("model", justify="left")
    base = rows[0].metrics
    names = list(base)
    uplifts = [m for m in names if m.startswith(("recall@", "precision@"))]
    for name in names:
        table.add_column(name, justify="right")
    for name in uplifts:
        table.add_column(f"Δ {name}", justify="right")
    for row in rows:
        values = [f"{row.metrics[m]:.4f}" for m in names]
        deltas = [_percent(uplift(row.metrics[m], base[m])) for m in uplifts]
        table.add_row(row.name, *values, *deltas)
    return table


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def cycle_table(cycles: dict[str, CycleFigures]) -> Table:
    table = Table(title="flywheel cycles (same events)")
    table.add_column("", justify="left")
    for judge in cycles:
        table.add_column(f"judge {judge}", justify="right")
    for label, value in _cycle_lines(cycles):
        table.add_row(label, *value)
    return table


def _cycle_lines(cycles: dict[str, CycleFigures]) -> list[tuple[str, list[str]]]:
    figures = list(cycles.values())

    def each(fn) -> list[str]:
        return [fn(f) for f in figures]

    def share(f: CycleFigures, group: str) -> str:
        judged = f.counts.get("judge", {}).get(group)
        if not judged:
            return "n/a"
        return f"{judged['filtered']:,} / {judged['events']:,} ({judged['share']:.1%})"

    lines = [
        ("status", each(lambda f: f.status)),
        ("wall time", each(lambda f: f"{f.wall_seconds:,.1f} s")),
        ("events", each(lambda f: f"{f.counts.get('events', 0):,}")),
        ("filtered: retriever data", each(lambda f: share(f, "retriever"))),
        ("filtered: generator data", each(lambda f: share(f, "generator"))),
    ]
    names = (
        "retriever_pairs",
        "reranker_examples",
        "reranker_mined_negatives",
        "train_tickets",
        "eval_queries",
    )
    for name in names:
        lines.append((name.replace("_", " "), each(lambda f, n=name: f"{f.counts.get(n, 0):,}")))
    lines.append(("left over the per-cycle cap", each(_over_cap)))
    for kind in TRAINED_KINDS:
        lines.append((f"gate: {kind}", each(lambda f, k=kind: _decision(f.decisions.get(k)))))
    return lines


def _over_cap(figures: CycleFigures) -> str:
    over = figures.counts.get("over_cap") or {}
    return ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in over.items()) or "none"


def _decision(decision: dict[str, Any] | None) -> str:
    if not decision:
        return "n/a"
    verdict = "promoted" if decision.get("promoted") else "kept champion"
    return f"{verdict}{decided_by(decision)}: {decision.get('reason', '')}"


def goals_table(found: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="goals")
    for name, justify in (("goal", "left"), ("measured", "right"), ("verdict", "center")):
        table.add_column(name, justify=justify)
    for name, goal in found.items():
        measured = goal["measured"]
        if name.endswith("uplift"):
            shown = f"{_percent(measured)} (≥ {goal['goal']:+.1%})"
        elif name == "cycle_seconds":
            shown = f"{measured:,.1f} s (≤ {goal['goal']:.0f} s)"
        else:
            seeds, error = goal.get("seeds", 1), goal.get("standard_error")
            over = f"mean of {seeds} seeds: " if seeds > 1 else ""
            shown = f"{over}on {measured[0]:.4f} vs off {measured[1]:.4f}"
            if error is not None:  # how far the gap is from nothing, in standard errors
                shown += f" (gap {measured[0] - measured[1]:+.4f} ± {error:.4f} s.e.)"
        table.add_row(name, shown, kb_pipeline._verdict(goal["pass"]))
    return table


def difference_table(difference: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="judge on − off, live after the gate, per training seed")
    seeds = list(next(iter(difference.values()))["per_seed"])
    table.add_column("metric", justify="left")
    for seed in seeds:
        table.add_column(f"seed {seed}", justify="right")
    for name in ("mean", "sd", "on ahead"):
        table.add_column(name, justify="right")
    for metric, found in difference.items():
        table.add_row(
            metric,
            *(f"{found['per_seed'][seed]:+.4f}" for seed in seeds),
            f"{found['mean']:+.4f}",
            "n/a" if found["sd"] is None else f"{found['sd']:.4f}",
            f"{found['on_ahead']} of {found['seeds']}",
        )
    return table


def print_report(report: dict[str, Any], rows: list[ModelRow], cycles) -> None:
    console.print(metrics_table(rows))
    if len(report["training_seeds"]) > 1:
        console.print(difference_table(report["judge_on_minus_off"]))
    console.print(cycle_table(cycles))
    for table in rule_tables(
        report["judge_against_truth"], "the rule judge (cycle) against the simulation's truth"
    ):
        wide.print(table)
    console.print(judge_goal_table({"rules": report["judge_goal"]}, report["layout"]))
    console.print(agents_table(report["annotation"]["agent_noise"], cycles))
    console.print(goals_table(report["goals"]))
    console.print(f"settings: {json.dumps(report['settings'])}")
    console.print(f"results written to {report['results']}; total {report['total_seconds']} s")
    missed = [name for name, goal in report["goals"].items() if not goal["pass"]]
    for name in missed:
        console.print(Panel(f"[bold]MISS: {name}[/] {report['goals'][name]}", style="bold red"))
    if not missed:
        console.print("[bold green]all goals met[/]")


def print_judge_report(report: dict[str, Any]) -> None:
    """The judge-only tables: per rule, the goal per judge, the LLM's sample."""
    judged = report["judged"]
    console.print(
        f"layout {report['layout']}: {judged['events']:,} standing events,"
        f" {judged['events_with_truth']:,} with a truth to check"
    )
    goals = {}
    for name, found in judged["judges"].items():
        if "skipped" in found:
            console.print(Panel(f"judge {name} skipped: {found['skipped']}", style="yellow"))
        elif name == "llm":
            console.print(llm_table(found))
        else:
            title = f"judge {name} ({report['layout']} layout) against the simulation's truth"
            for table in rule_tables(found["against_truth"], title, found.get("rules_ran")):
                wide.print(table)
            goals[name] = found["goal"]
    if goals:
        console.print(judge_goal_table(goals, report["layout"]))
        for judge, found in goals.items():
            both = found[RELEVANCE]
            verdict = {True: "PASS", False: "MISS", None: "n/a"}[both["pass"]]
            console.print(
                f"{verdict}: judge {judge} on the {report['layout']} layout drops"
                f" {_percent_or_na(both['wrong_dropped'])} of the wrong relevance marks"
                f" (≥ {GOAL_WRONG_DROPPED:.0%}) and {_percent_or_na(both['right_dropped'])}"
                f" of the right ones (≤ {GOAL_RIGHT_DROPPED:.0%})"
            )
    console.print(f"results written to {report['results']}; total {report['total_seconds']} s")


def _settings_used(settings: Settings) -> dict[str, Any]:
    names = (
        "embedding_model",
        "retrieve_k",
        "context_k",
        "generator",
        "flywheel_holdout",
        "flywheel_min_examples",
        "flywheel_max_examples",
        "gate_margin",
        "gate_tolerance",
        "retriever_epochs",
        "retriever_batch_size",
        "reranker_epochs",
        "reranker_mined_negatives",
        "reranker_cosine_weight",
        "judge_min_read_s",
        "flywheel_seed",
        "torch_threads",
    )
    return {name: getattr(settings, name) for name in names}


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tickets", type=int, default=None, help="cap on tickets (whole dialogues); default all"
    )
    parser.add_argument(
        "--layout",
        choices=layouts.LAYOUTS,
        default=None,
        help="how the dstc11 knowledge is cut into documents (default entity; with --reuse, "
        "the data dir's)",
    )
    parser.add_argument(
        "--judge-only",
        action="store_true",
        help="annotate, then judge the stored events against the simulation's truth, per rule;"
        " no training",
    )
    parser.add_argument(
        "--judges",
        type=_judges,
        default=["rules"],
        help="with --judge-only, the judges to measure, as AITL_JUDGE: rules, off, llm "
        "(comma-separated; default rules)",
    )
    parser.add_argument(
        "--llm-sample",
        type=positive,
        default=150,
        help="the llm judge reads this many relevance and as many preference events, a "
        "seeded stratified sample (default 150)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the knowledge base and events already in --data-dir (no ingest, no annotation)",
    )
    parser.add_argument("--noise", type=float, default=0.2, help="share of relevance marks flipped")
    parser.add_argument(
        "--noise-spread",
        type=float,
        default=0.0,
        help="agents' noise from noise - spread to noise + spread (novices and experts)",
    )
    parser.add_argument(
        "--missing-noise",
        type=float,
        default=0.0,
        help="share of missing-knowledge picks naming a retrieved passage that does not answer",
    )
    parser.add_argument("--agents", type=int, default=5, help="simulated agents, round-robin")
    parser.add_argument(
        "--careless", type=float, default=0.1, help="share of cards clicked through unread"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the simulated agents")
    parser.add_argument(
        "--train-seeds",
        type=_seeds,
        default=None,
        help="AITL_FLYWHEEL_SEED of each judge on/off pair of cycles on the same clicks, e.g. "
        "42,43,44; judge on vs off is read from the means (default: the product's seed)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data dir (embedded Postgres); default: a fresh temporary one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where the JSON goes (default {RESULTS}; flywheel_<layout>.json for another "
        "layout, flywheel_judge_<layout>.json with --judge-only)",
    )
    stream = parser.add_argument_group(
        "streaming mode (benchmarks/flywheel_stream.py): clicks that count before the retrain"
    )
    stream.add_argument(
        "--stream",
        action="store_true",
        help="tickets arrive in order, agents click with the feedback memory on, the held-out"
        " tickets are scored with the memory on and off every --every tickets, one weekly"
        " cycle at --retrain-at; --tickets caps the stream",
    )
    stream.add_argument(
        "--every", type=positive, default=100, help="score the held-out tickets every N"
    )
    stream.add_argument(
        "--refresh-every",
        type=positive,
        default=20,
        help="refresh the memory every N tickets (the product's cron: every 2 minutes)",
    )
    stream.add_argument(
        "--retrain-at",
        type=positive,
        default=None,
        help="the weekly cycle runs after N stream tickets (default: half the stream)",
    )
    stream.add_argument(
        "--seeds",
        type=_seeds,
        default=[SEED],
        help="the simulated agents' seeds, one stream each on a copy of the knowledge base",
    )
    stream.add_argument(
        "--held-out",
        type=positive,
        default=None,
        help="score only the first N held-out tickets (a quick look; default all of them)",
    )
    stream.add_argument(
        "--label",
        default="",
        help="results/flywheel_stream_<label>_<layout>.json and its plot (e.g. noisy)",
    )
    args = parser.parse_args(argv)
    if args.stream and (args.reuse or args.judge_only):
        parser.error("--stream ingests its own knowledge base: not with --reuse or --judge-only")
    if args.reuse and args.data_dir is None:
        parser.error("--reuse needs --data-dir (a data dir this benchmark annotated)")
    return args


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated integers, not {text!r}") from exc
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"distinct non-negative seeds, not {text!r}")
    return seeds


def _judges(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or len(set(names)) != len(names) or set(names) - set(JUDGES):
        raise argparse.ArgumentTypeError(
            f"distinct judges among {', '.join(JUDGES)}, comma-separated, not {text!r}"
        )
    return names


def positive(text: str) -> int:
    """An argparse type: a positive integer (shared by the benchmarks' options)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a positive integer, not {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive integer, not {text!r}")
    return value


def results_path(args: argparse.Namespace, layout: str) -> Path:
    if args.results is not None:
        return args.results
    if args.judge_only:
        return RESULTS_DIR / f"flywheel_judge_{layout}.json"
    return RESULTS if layout == "entity" else RESULTS_DIR / f"flywheel_{layout}.json"


def make_settings(data_dir: Path) -> Settings:
    """kb_pipeline's settings (product defaults, embedded database), the rule judge on."""
    settings = kb_pipeline.make_settings(data_dir)
    return settings.model_copy(update={"judge": "rules", "flywheel_holdout": HOLDOUT})


# --- the knowledge base and the clicks (built, or reused) --------------------------------

ANNOTATION_OPTIONS = ("noise", "noise_spread", "missing_noise", "agents", "careless", "seed")


@dataclass
class Bench:
    """The knowledge base and the clicks a run measures on."""

    layout: str
    tickets: list[DstcTicket]
    train: list[DstcTicket]
    test: list[DstcTicket]
    chunks: dict[str, frozenset[int]]  # knowledge item → its gold chunks in this layout
    gold_by_set: dict[int, frozenset[int]]  # annotated draft set → its ticket's gold chunks
    data: dict[str, Any]
    annotation: dict[str, Any]
    annotated_with: dict[str, Any]  # the agents' options the clicks were made with
    reused: bool = False


def build(settings: Settings, db: Database, args: argparse.Namespace) -> Bench:
    """Ingest the layout's knowledge base and annotate the training tickets, then write down
    in the data dir what ``--reuse`` needs to read them back."""
    layout = args.layout or "entity"
    tickets = load_tickets(args.tickets)
    train, test = split(tickets, HOLDOUT)
    console.print(
        f"tickets: {len(tickets):,} ({len(train):,} annotated, {len(test):,} held out for gold);"
        f" layout {layout}"
    )
    with db.connection() as conn:
        if feedback_store.events(conn, kind="adoption"):
            raise SystemExit(
                "the data dir already holds feedback events: use a fresh one, or --reuse"
            )
    ingested = ingest_layout(settings, db, layout)
    chunks = layouts.gold_chunks(layout, db)
    annotation = annotate(settings, db, train, chunks, args)
    data = {**ingested, "gold_items_without_chunk": len(_unmapped(tickets, chunks))}
    annotated = {
        k: v for k, v in asdict(annotation).items() if k not in ("gold_by_set", "set_instances")
    }
    options = {name: getattr(args, name) for name in ANNOTATION_OPTIONS}
    state = {
        "layout": layout,
        "tickets": args.tickets,
        "annotated_with": options,
        "data": data,
        "annotation": annotated,
        "sets": {str(set_id): i for set_id, i in annotation.set_instances.items()},
    }
    (settings.data_dir / STATE).write_text(json.dumps(state) + "\n", encoding="utf-8")
    return Bench(
        layout, tickets, train, test, chunks, annotation.gold_by_set, data, annotated, options
    )


def ingest_layout(settings: Settings, db: Database, layout: str) -> dict[str, Any]:
    """The layout's knowledge base ingested (the model loaded first, so the time is the
    ingest's), and its figures."""
    ingestor = factory.ingestor(settings, db)
    kb_pipeline.warm_up_ingest(ingestor)
    ingest = layouts.build_kb(layout, ingestor, db, settings.chunk_size)
    return {
        "kb_documents": ingest.dstc_documents,
        "kb_chunks": ingest.chunks_in_kb,
        "ingest_seconds": round(ingest.seconds, 1),
    }


def reuse(settings: Settings, db: Database, args: argparse.Namespace) -> Bench:
    """The knowledge base and clicks a previous run left in the data dir: the layout and
    ticket cap it recorded, each annotated draft set's dstc11 ticket checked against what the
    draft set stored (its ticket_ref and query), and the gold mapped again from the live KB."""
    path = settings.data_dir / STATE
    if not path.is_file():
        raise SystemExit(f"--reuse: no {path}: not a data dir this benchmark annotated")
    state = json.loads(path.read_text(encoding="utf-8"))
    layout = args.layout or state["layout"]
    if layout != state["layout"]:
        raise SystemExit(f"--reuse: the data dir holds the {state['layout']} layout, not {layout}")
    if args.tickets is not None and args.tickets != state["tickets"]:
        raise SystemExit(f"--reuse: the data dir was annotated with --tickets {state['tickets']}")
    tickets = load_tickets(state["tickets"])
    train, test = split(tickets, HOLDOUT)
    chunks = layouts.gold_chunks(layout, db)
    sets = {int(set_id): instance for set_id, instance in state["sets"].items()}
    gold_by_set = stored_gold(db, sets, tickets, chunks)
    console.print(
        f"reusing {path}: layout {layout}, {len(gold_by_set):,} annotated draft sets, clicks"
        f" made with {state['annotated_with']} (these options, not this run's, apply)"
    )
    return Bench(
        layout,
        tickets,
        train,
        test,
        chunks,
        gold_by_set,
        state["data"],
        state["annotation"],
        state["annotated_with"],
        reused=True,
    )


def stored_gold(
    db: Database,
    sets: dict[int, int],
    tickets: Sequence[DstcTicket],
    chunks: dict[str, frozenset[int]],
) -> dict[int, frozenset[int]]:
    """Each stored draft set's gold chunks, from the dstc11 ticket it was drafted for; a set
    whose ticket_ref or query is not that ticket's stops the run."""
    by_instance = {t.instance: t for t in tickets}
    with db.connection() as conn:
        infos = rag_store.draft_set_infos(conn, list(sets))
    found = {}
    for set_id, instance in sets.items():
        ticket, info = by_instance.get(instance), infos.get(set_id)
        if (
            ticket is None
            or info is None
            or info.ticket_ref != ticket.ticket_ref
            or info.query != ticket.ticket.query_text()
        ):
            raise SystemExit(f"--reuse: draft set {set_id} is not dstc11 val instance {instance}")
        found[set_id] = gold_of(ticket, chunks)
    return found


def _unmapped(tickets: Sequence[DstcTicket], chunks: dict[str, frozenset[int]]) -> list[str]:
    """Knowledge items some ticket names that no chunk holds (none expected)."""
    return sorted({item for t in tickets for item in t.gold if not chunks.get(item)})


# --- run ---------------------------------------------------------------------------------


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    db = open_database(settings)
    try:
        bench = reuse(settings, db, args) if args.reuse else build(settings, db, args)
        args.layout = bench.layout
        if args.judge_only:
            report = _head(settings, args, bench, "judge_only")
            report["judged"] = judge_only(settings, db, bench.gold_by_set, args)
        else:
            report = train_and_score(settings, db, bench, args)
    finally:
        db.close()
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    path = results_path(args, bench.layout)
    report["results"] = str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = report.pop("_rows", None)
    cycles = report.pop("_cycles", None)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if args.judge_only:
        print_judge_report(report)
    else:
        print_report(report, rows, cycles)
    return report


def _head(settings: Settings, args: argparse.Namespace, bench: Bench, mode: str) -> dict[str, Any]:
    return {
        "benchmark": "flywheel",
        "mode": mode,
        "layout": bench.layout,
        "reused": bench.reused,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "settings": _settings_used(settings),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "annotated_with": bench.annotated_with,
        "data": {
            **bench.data,
            "tickets": len(bench.tickets),
            "annotated_tickets": len(bench.train),
            "test_tickets": len(bench.test),
            "test_dialogues": len({t.dialogue for t in bench.test}),
        },
        "annotation": bench.annotation,
    }


def train_and_score(
    settings: Settings, db: Database, bench: Bench, args: argparse.Namespace
) -> dict[str, Any]:
    """Judge-on and judge-off cycles on the same clicks, per training seed, scored on gold."""
    if bench.reused:
        with db.connection() as conn:
            if feedback_store.runs(conn, limit=1):
                raise SystemExit(
                    "--reuse: this data dir has run cycles already (its live models may not be"
                    " the shipped ones); reuse it with --judge-only"
                )
    seeds = args.train_seeds or [settings.flywheel_seed]
    settings = settings.model_copy(update={"flywheel_seed": seeds[0]})  # as reported
    pairs: dict[int, dict[str, CycleFigures]] = {}
    for turn, seed in enumerate(seeds):
        if len(seeds) > 1:
            console.print(f"training seed {seed} ({turn + 1} of {len(seeds)})")
        seeded = settings.model_copy(update={"flywheel_seed": seed})
        on = run_cycle(seeded, db)
        rolled_back = roll_back(seeded, db, on)
        if not turn:  # the tables show the first pair; the others add their live rows
            truth = judge_against_truth(db, on.run_id, bench.gold_by_set)
            rolled = rolled_back
        off = run_cycle(seeded.model_copy(update={"judge": "off"}), db)
        pairs[seed] = {"rules": on, "off": off}
        if turn < len(seeds) - 1:
            roll_back(seeded, db, off)  # the next pair starts from the shipped models too
    evaluator = held_out_evaluator(settings, db, bench.test, bench.chunks)
    cycles = pairs[seeds[0]]
    rows = evaluate(settings, evaluator, cycles)
    live = {seeds[0]: live_by_judge(rows)}
    for seed in seeds[1:]:
        live[seed] = live_by_judge(evaluate(settings, evaluator, pairs[seed], live_only=True))
    difference = judge_difference(live)
    return {
        **_head(settings, args, bench, "train"),
        "judge_against_truth": truth,
        "judge_goal": relevance_goals(truth[JUDGE_ROW]),
        "cycles": {judge: asdict(f) for judge, f in cycles.items()},
        "rolled_back_before_judge_off": rolled,
        "evaluation": [asdict(row) for row in rows],
        "training_seeds": seeds,
        "repeats": {
            str(seed): {
                "cycles": {judge: asdict(f) for judge, f in pairs[seed].items()},
                "live": live[seed],
            }
            for seed in seeds[1:]
        },
        "judge_on_minus_off": difference,
        "goals": goals(rows, cycles, difference),
        "_rows": rows,
        "_cycles": cycles,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stream:  # the data dir holds one copy of the knowledge base per seed
        from benchmarks import flywheel_stream

        return flywheel_stream.main(args)
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-flywheel-")) if temporary else args.data_dir
    settings = make_settings(data_dir)
    console.print(f"data dir: {data_dir} ({'temporary' if temporary else 'given'})")
    try:
        run(settings, args)
    finally:
        kb_pipeline.stop_embedded_server(settings)
        if temporary and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif temporary:
            console.print(f"kept data dir {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
