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

from rich.panel import Panel
from rich.table import Table

from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.queue import build_deferrer
from aitl.core.settings import Settings
from benchmarks import kb_pipeline
from bot.recorder import FeedbackRecorder
from flywheel import cycle
from flywheel import store as feedback_store
from flywheel.evaluation import EvalQuery, RetrieverEvaluator
from flywheel.registry import Registry
from flywheel.reports import decided_by
from rag import factory
from rag import store as rag_store
from rag.models import Message, Ticket
from sandboxes.agents.policy import AgentPolicy, SimulatedAgent, show

DSTC_DIR = kb_pipeline.DSTC_DIR
RESULTS = Path(__file__).resolve().parent / "results" / "flywheel.json"
SEED = 20240611
HOLDOUT = 0.1  # the last share of tickets, never annotated, scored against dstc11 gold
EVAL_DEPTH = 100  # at least: recall@AITL_RETRIEVE_K may need deeper
GOAL_RECALL_UPLIFT = 0.117  # the paper's +11.7% recall@75
GOAL_PRECISION_UPLIFT = 0.148  # the paper's +14.8% precision@8
GOAL_CYCLE_S = 15 * 60.0
TRAINED_KINDS = ("retriever", "reranker")

console = kb_pipeline.console


# --- tickets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DstcTicket:
    """One knowledge-seeking turn of dstc11 val, as a support ticket with its gold knowledge."""

    instance: int  # index in val/logs.json
    dialogue: int  # dialogues numbered by first appearance in the file
    ticket: Ticket
    gold: tuple[str, ...]  # KB external ids named by labels[instance].knowledge

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
    return DstcTicket(index, dialogue, ticket, tuple(_external_id(k) for k in label["knowledge"]))


def _external_id(knowledge: dict) -> str:
    """The KB document a label names (kb_pipeline's ids: one doc per FAQ, per review sentence)."""
    prefix = f"{knowledge['doc_type']}:{knowledge['domain']}:{knowledge['entity_id']}"
    if knowledge["doc_type"] == "review":
        return f"{prefix}:{knowledge['doc_id']}:{knowledge['sent_id']}"
    return f"{prefix}:{knowledge['doc_id']}"


def split(tickets: Sequence[DstcTicket], holdout: float) -> tuple[list, list]:
    """The first (1 - holdout) of tickets to annotate, the rest to test; cut between dialogues."""
    wanted = round(len(tickets) * (1 - holdout))
    cut = wanted
    while 0 < cut < len(tickets) and tickets[cut].dialogue == tickets[cut - 1].dialogue:
        cut += 1
    return list(tickets[:cut]), list(tickets[cut:])


def gold_chunks(db: Database) -> dict[str, frozenset[int]]:
    """KB external id → its live chunk ids."""
    ids = [chunk_id for chunk_id, _ in cycle.corpus(db)]
    with db.connection() as conn:
        refs = rag_store.chunk_refs(conn, ids)
    found: dict[str, set[int]] = {}
    for ref in refs.values():
        found.setdefault(ref.external_id, set()).add(ref.chunk_id)
    return {external_id: frozenset(chunks) for external_id, chunks in found.items()}


def gold_of(ticket: DstcTicket, chunks: dict[str, frozenset[int]]) -> frozenset[int]:
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


def annotate(
    settings: Settings,
    db: Database,
    tickets: Sequence[DstcTicket],
    chunks: dict[str, frozenset[int]],
    args: argparse.Namespace,
) -> AnnotationFigures:
    """Draft, show and click through every ticket, agents taking them in turn."""
    pipeline = factory.pipeline(settings, db)
    recorder = FeedbackRecorder(db, build_deferrer(db.url))
    team = [
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
    started = time.perf_counter()
    stored, draft_s, gold_shown, shown_total = 0, 0.0, 0, 0
    gold_by_set: dict[int, frozenset[int]] = {}
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
        agent_noise={agent.agent_id: agent.policy.noise for agent in team},
    )


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


def judge_against_truth(
    db: Database, run_id: int, gold_by_set: dict[int, frozenset[int]]
) -> dict[str, dict[str, int]]:
    """What the judge dropped, against what the simulation knows: per kind of mark, how many
    were right or wrong (by the gold labels) and how many of each the judge filtered."""
    with db.connection() as conn:
        dropped = feedback_store.filtered_event_ids(conn, run_id)
        events = feedback_store.events(conn)
    found: dict[str, Counter[str]] = {}
    for e in events:
        if e.kind not in ("relevance", "missing_knowledge") or not e.chunk_ids:
            continue
        in_gold = e.chunk_ids[0] in gold_by_set.get(e.draft_set_id, frozenset())
        claims = e.kind == "missing_knowledge" or e.value == "relevant"
        truth = "right" if in_gold == claims else "wrong"
        counts = found.setdefault(e.value, Counter())
        counts[truth] += 1
        counts[f"{truth}_dropped"] += e.id in dropped
    return {value: dict(sorted(c.items())) for value, c in sorted(found.items())}


def truth_table(found: dict[str, dict[str, int]]) -> Table:
    table = Table(title="The rule judge against the simulation's truth (gold labels)")
    for column in ("mark", "wrong", "wrong dropped", "right", "right dropped"):
        table.add_column(column, justify="left" if column == "mark" else "right")
    for value, c in found.items():
        wrong, right = c.get("wrong", 0), c.get("right", 0)
        table.add_row(
            value,
            f"{wrong:,}",
            f"{c.get('wrong_dropped', 0):,} ({_share(c.get('wrong_dropped', 0), wrong)})",
            f"{right:,}",
            f"{c.get('right_dropped', 0):,} ({_share(c.get('right_dropped', 0), right)})",
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
    console.print(truth_table(report["judge_against_truth"]))
    console.print(agents_table(report["annotation"]["agent_noise"], cycles))
    console.print(goals_table(report["goals"]))
    console.print(f"settings: {json.dumps(report['settings'])}")
    console.print(f"results written to {report['results']}; total {report['total_seconds']} s")
    missed = [name for name, goal in report["goals"].items() if not goal["pass"]]
    for name in missed:
        console.print(Panel(f"[bold]MISS: {name}[/] {report['goals'][name]}", style="bold red"))
    if not missed:
        console.print("[bold green]all goals met[/]")


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
        "--results", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})"
    )
    return parser.parse_args(argv)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated integers, not {text!r}") from exc
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"distinct non-negative seeds, not {text!r}")
    return seeds


def make_settings(data_dir: Path) -> Settings:
    """kb_pipeline's settings (product defaults, embedded database), the rule judge on."""
    settings = kb_pipeline.make_settings(data_dir)
    return settings.model_copy(update={"judge": "rules", "flywheel_holdout": HOLDOUT})


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    tickets = load_tickets(args.tickets)
    train, test = split(tickets, HOLDOUT)
    console.print(
        f"tickets: {len(tickets):,} ({len(train):,} annotated, {len(test):,} held out for gold)"
    )
    db = open_database(settings)
    try:
        with db.connection() as conn:
            if feedback_store.events(conn, kind="adoption"):
                raise SystemExit("the data dir already holds feedback events: use a fresh one")
        ingestor = factory.ingestor(settings, db)
        kb_pipeline.warm_up_ingest(ingestor)
        docs = len(kb_pipeline.dstc_documents(10**9))
        ingest = kb_pipeline.build_kb(ingestor, db, docs, settings.chunk_size)
        chunks = gold_chunks(db)
        annotation = annotate(settings, db, train, chunks, args)
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
                truth = judge_against_truth(db, on.run_id, annotation.gold_by_set)
                rolled = rolled_back
            off = run_cycle(seeded.model_copy(update={"judge": "off"}), db)
            pairs[seed] = {"rules": on, "off": off}
            if turn < len(seeds) - 1:
                roll_back(seeded, db, off)  # the next pair starts from the shipped models too
        evaluator = held_out_evaluator(settings, db, test, chunks)
        cycles = pairs[seeds[0]]
        rows = evaluate(settings, evaluator, cycles)
        live = {seeds[0]: live_by_judge(rows)}
        for seed in seeds[1:]:
            live[seed] = live_by_judge(evaluate(settings, evaluator, pairs[seed], live_only=True))
    finally:
        db.close()
    difference = judge_difference(live)
    report = {
        "benchmark": "flywheel",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "settings": _settings_used(settings),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {
            "kb_documents": ingest.dstc_documents,
            "kb_chunks": ingest.chunks_in_kb,
            "ingest_seconds": round(ingest.seconds, 1),
            "tickets": len(tickets),
            "annotated_tickets": len(train),
            "test_tickets": len(test),
            "test_dialogues": len({t.dialogue for t in test}),
        },
        "annotation": {k: v for k, v in asdict(annotation).items() if k != "gold_by_set"},
        "judge_against_truth": truth,
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
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    report["results"] = str(args.results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report, rows, cycles)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
