"""The flywheel benchmark's streaming mode: do clicks count before the weekly retrain?

``benchmarks/flywheel.py --stream`` runs it. Per seed, on a copy of one ingested knowledge
base, dstc11 tickets arrive in file order and simulated agents click on the cards the
product drafts for them, with the feedback memory on, as it ships. Every ``--refresh-every``
tickets the memory is refreshed (the product's cron does it every two minutes). Every
``--every`` tickets the held-out tickets (never clicked) are drafted by the live pipeline with
the memory and without it, and scored against dstc11 gold at the drafts' depths. After
``--retrain-at`` tickets the weekly cycle runs (rule judge, gate, promotion), the memory is
rebuilt under the new embedding version when the retriever changed, and the stream goes on.

What each line means:

- **memory off** is the live models alone: the shipped ones before the cycle (the baseline),
  then whatever the cycle left live ("retrain alone");
- **memory on** is what an agent gets: the same models steered by the clicks remembered so
  far ("memory alone" before the cycle, "memory + retrain" after it).

One click stream per seed: the agents click on drafts made with the memory on, so the cycle
trains on those clicks for both lines. "Memory on" after the cycle without the cycle is not
run (it would need a second stream from the retrain point).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from scipy import stats

from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.settings import Settings
from benchmarks import flywheel as bench
from benchmarks import kb_pipeline, layouts
from flywheel.evaluation import retrieval_metrics, to_run
from flywheel.memory import FlywheelMemory, MemoryBuilder
from flywheel.serving import LivePipeline
from rag.pipeline import DraftPipeline

console = bench.console
RESULTS_DIR = bench.RESULTS_DIR
GOAL_SHARE_OF_CYCLE = 0.5  # memory alone, at the retrain point, vs the cycle's uplift


@dataclass
class Checkpoint:
    tickets: int  # stream tickets clicked so far
    retrained: bool  # after the weekly cycle
    memory_entries: int
    on: dict[str, float]  # held-out metrics, the live models with the memory
    off: dict[str, float]  # the live models alone
    moved: int  # held-out tickets on which the memory moved a source
    seconds: float  # since the seed's stream began


# --- scoring --------------------------------------------------------------------------------


def score(
    pipeline: DraftPipeline,
    test: Sequence[bench.DstcTicket],
    chunks: dict[str, frozenset[int]],
    settings: Settings,
) -> tuple[dict[str, float], int]:
    """The held-out tickets drafted as an agent would get them (nothing saved): their context
    then the rest of the candidates, scored against gold at the pipeline's depths; and on how
    many tickets the memory moved a source."""
    ranked: dict[str, list[tuple[int, float]]] = {}
    qrels: dict[str, dict[str, int]] = {}
    moved = 0
    for ticket in test:
        result = pipeline.draft(ticket.ticket)
        context = [c.chunk_id for c in result.context]
        rest = [c.chunk_id for c in result.retrieved if c.chunk_id not in set(context)]
        query_id = ticket.ticket.external_id or str(ticket.instance)
        ranked[query_id] = [(chunk_id, 0.0) for chunk_id in context + rest]
        qrels[query_id] = {str(c): 1 for c in bench.gold_of(ticket, chunks)}
        moved += any(d.producer.get("memory") for d in result.drafts)
    found = retrieval_metrics(
        qrels, to_run(ranked), retrieve_k=settings.retrieve_k, context_k=settings.context_k
    )
    return {k: round(v, 4) for k, v in found.metrics.items()}, moved


# --- one seed's stream ----------------------------------------------------------------------


def stream_seed(
    settings: Settings,
    db: Database,
    stream: Sequence[bench.DstcTicket],
    test: Sequence[bench.DstcTicket],
    chunks: dict[str, frozenset[int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Click through ``stream`` with the memory on, retrain once, score at every checkpoint."""
    started = time.perf_counter()
    team = bench.make_team(db, args)
    builder = MemoryBuilder(settings, db)
    with_memory = LivePipeline(settings, db, memory=FlywheelMemory(settings, db), check_every_s=0)
    alone = LivePipeline(settings, db, check_every_s=0)
    points: list[Checkpoint] = []
    off: dict[str, float] = {}
    cycle: bench.CycleFigures | None = None

    def checkpoint(done: int, *, rescore_off: bool) -> None:
        nonlocal off
        refreshed = builder.refresh()
        on, moved = score(with_memory(), test, chunks, settings)
        if rescore_off:
            off, _ = score(alone(), test, chunks, settings)
        points.append(
            Checkpoint(
                done,
                cycle is not None,
                refreshed.entries,
                on,
                off,
                moved,
                round(time.perf_counter() - started, 1),
            )
        )
        primary = f"recall@{settings.retrieve_k}"
        console.print(
            f"  {done:5,} tickets{' (after the cycle)' if cycle else ''}: memory"
            f" {refreshed.entries:,} clicks, moved a source on {moved} of {len(test)} held-out;"
            f" {primary} on {on[primary]:.3f} / off {off[primary]:.3f}"
        )

    checkpoint(0, rescore_off=True)
    done = 0
    while done < len(stream):
        if done == args.retrain_at and cycle is None:
            console.print(f"  the weekly cycle, after {done:,} tickets")
            cycle = bench.run_cycle(settings, db)
            checkpoint(done, rescore_off=True)
        stop = min(
            len(stream),
            _next(done, args.refresh_every),
            _next(done, args.every),
            args.retrain_at if done < args.retrain_at else len(stream),
        )
        bench.annotate(
            settings, db, stream[done:stop], chunks, args, pipeline=with_memory(), team=team
        )
        done = stop
        if done % args.every == 0 or done in (len(stream), args.retrain_at):
            checkpoint(done, rescore_off=done == len(stream))
        elif done % args.refresh_every == 0:
            builder.refresh()
    if cycle is None and args.retrain_at == len(stream):
        console.print(f"  the weekly cycle, after {done:,} tickets")
        cycle = bench.run_cycle(settings, db)
        checkpoint(done, rescore_off=True)
    return {
        "seed": args.seed,
        "checkpoints": [asdict(p) for p in points],
        "cycle": asdict(cycle) if cycle else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _next(done: int, every: int) -> int:
    return (done // every + 1) * every


# --- the runs -------------------------------------------------------------------------------


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Ingest the layout once, then stream each seed on a copy of it; the report so far is
    saved after each seed (``partial`` until the last), so a long run that is stopped keeps
    the seeds it finished."""
    started = time.perf_counter()
    layout = args.layout or "entity"
    work = Path(tempfile.mkdtemp(prefix="aitl-stream-")) if args.data_dir is None else args.data_dir
    work.mkdir(parents=True, exist_ok=True)
    tickets = bench.load_tickets(None)
    train, test = bench.split(tickets, bench.HOLDOUT)
    stream = train[: args.tickets] if args.tickets else train
    test = test[: args.held_out] if args.held_out else test
    if args.retrain_at is None:
        args.retrain_at = len(stream) // 2
    console.print(
        f"stream: {len(stream):,} tickets, the weekly cycle after {args.retrain_at:,};"
        f" {len(test):,} held-out tickets scored every {args.every:,}; layout {layout};"
        f" seeds {args.seeds}; data in {work}"
    )
    template = work / f"template-{layout}"
    ingest = _template(template, layout)
    settings = stream_settings(template)
    head = {
        "benchmark": "flywheel",
        "mode": "stream",
        "layout": layout,
        "settings": bench._settings_used(settings),
        "agents": {
            name: getattr(args, name) for name in bench.ANNOTATION_OPTIONS if name != "seed"
        },
        "stream_tickets": len(stream),
        "retrain_at": args.retrain_at,
        "every": args.every,
        "refresh_every": args.refresh_every,
        "test_tickets": len(test),
        "data": ingest,
    }
    seeds: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    try:
        for seed in args.seeds:
            console.print(f"seed {seed}")
            seeds.append(_one_seed(template, work / f"seed-{seed}", stream, test, args, seed))
            report = {
                **head,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "partial": len(seeds) < len(args.seeds),
                "seeds": seeds,
                "goals": goals(seeds, args.retrain_at, metrics_of(settings)),
                "total_seconds": round(time.perf_counter() - started, 1),
            }
            save(report)
    finally:
        if args.data_dir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def stream_settings(data_dir: Path) -> Settings:
    """The flywheel benchmark's settings with the extractive drafter alone: the stream scores
    what drafts are built from, not their text, so no LLM drafts (25 tokens/s here) and no
    generator is trained."""
    return bench.make_settings(data_dir).model_copy(
        update={"generator": "extractive", "llm_challenger": False}
    )


def _template(folder: Path, layout: str) -> dict[str, Any]:
    """The layout's knowledge base, ingested once into ``folder`` (kept when it is there)."""
    marker = folder / "ingested.json"
    if marker.is_file():
        console.print(f"reusing the ingested {layout} knowledge base in {folder}")
        return json.loads(marker.read_text(encoding="utf-8"))
    settings = bench.make_settings(folder)
    db = open_database(settings)
    try:
        figures = bench.ingest_layout(settings, db, layout)
    finally:
        db.close()
        kb_pipeline.stop_embedded_server(settings)
    marker.write_text(json.dumps(figures) + "\n", encoding="utf-8")
    return figures


def _one_seed(
    template: Path,
    folder: Path,
    stream: Sequence[bench.DstcTicket],
    test: Sequence[bench.DstcTicket],
    args: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    """A fresh copy of the ingested knowledge base (its stopped Postgres included)."""
    shutil.rmtree(folder, ignore_errors=True)
    copy_data_dir(template, folder)
    settings = stream_settings(folder)
    seeded = argparse.Namespace(**{**vars(args), "seed": seed})
    db = open_database(settings)
    try:
        chunks = layouts.gold_chunks(args.layout or "entity", db)
        return stream_seed(settings, db, stream, test, chunks, seeded)
    finally:
        db.close()
        kb_pipeline.stop_embedded_server(settings)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def copy_data_dir(source: Path, target: Path) -> None:
    """A copy of a stopped data dir, owners kept: run as root, the embedded Postgres runs as
    its own user and must still own its files in the copy."""
    shutil.copytree(source, target)
    if os.geteuid() != 0:
        return
    for folder, _, files in os.walk(source):
        for path in (Path(folder), *(Path(folder) / name for name in files)):
            owner = path.lstat()
            os.lchown(target / path.relative_to(source), owner.st_uid, owner.st_gid)


# --- goals ----------------------------------------------------------------------------------


def metrics_of(settings: Settings) -> tuple[str, str]:
    """The two figures the stream is read on: recall of the candidates, precision of the
    context (the drafts' depths)."""
    return f"recall@{settings.retrieve_k}", f"precision@{settings.context_k}"


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, min, max and a 95 % Student t-interval over seeds (None with one seed, or when
    every seed gave the same figure)."""
    n = len(values)
    mean = statistics.fmean(values)
    low_high = None
    if n > 1 and statistics.stdev(values) > 0:
        low_high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(values))
    elif n > 1:
        low_high = (mean, mean)
    return {
        "mean": round(mean, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "ci95": [round(float(x), 4) for x in low_high] if low_high is not None else None,
        "n": n,
    }


def goals(seeds: Sequence[dict[str, Any]], retrain_at: int, metrics: Sequence[str]) -> dict:
    """Per metric: the memory alone at the retrain point vs the cycle's uplift; memory +
    retrain vs retrain alone at the end of the stream; the worst memory-on minus memory-off
    over every checkpoint (what noisy agents must not make negative)."""
    found: dict[str, Any] = {}
    for metric in metrics:
        memory_alone, cycle_uplift, at_end, worst = [], [], [], []
        for seed in seeds:
            points = seed["checkpoints"]
            base = points[0]["off"][metric]
            before = [p for p in points if p["tickets"] == retrain_at and not p["retrained"]]
            after = [p for p in points if p["retrained"]]
            if before:
                memory_alone.append(before[-1]["on"][metric] - base)
            if after:
                cycle_uplift.append(after[0]["off"][metric] - base)
                at_end.append(after[-1]["on"][metric] - after[-1]["off"][metric])
            worst.append(min(p["on"][metric] - p["off"][metric] for p in points))
        entry: dict[str, Any] = {"worst_on_minus_off": interval(worst)}
        if memory_alone and cycle_uplift:
            alone, uplift = interval(memory_alone), interval(cycle_uplift)
            entry["memory_alone_at_retrain"] = alone
            entry["cycle_uplift"] = uplift
            entry["memory_alone_share_of_cycle"] = (
                round(alone["mean"] / uplift["mean"], 3) if uplift["mean"] > 0 else None
            )
            entry["memory_alone_goal_met"] = bool(
                uplift["mean"] > 0 and alone["mean"] >= GOAL_SHARE_OF_CYCLE * uplift["mean"]
            )
        if at_end:
            end = interval(at_end)
            low = end["ci95"][0] if end["ci95"] else end["min"]
            entry["memory_plus_retrain_minus_retrain_at_end"] = end
            entry["beats_retrain_alone"] = bool(low > 0)
        entry["never_worse_than_off"] = bool(interval(worst)["mean"] >= 0)
        found[metric] = entry
    return found


# --- report ---------------------------------------------------------------------------------


def stream_table(report: dict[str, Any]) -> Table:
    """Per checkpoint: the mean over seeds (min–max) with the memory on and off."""
    settings_k = report["settings"]
    recall = f"recall@{settings_k['retrieve_k']}"
    precision = f"precision@{settings_k['context_k']}"
    table = Table(title=f"held-out tickets over the stream, layout {report['layout']}")
    for column in ("tickets", "models", "memory clicks", recall + " on", recall + " off"):
        table.add_column(column, justify="right")
    table.add_column(precision + " on", justify="right")
    table.add_column(precision + " off", justify="right")
    for row in checkpoint_rows(report):
        table.add_row(
            f"{row['tickets']:,}",
            "after the cycle" if row["retrained"] else "shipped",
            f"{row['entries']:,.0f}",
            _spread(row[recall]["on"]),
            _spread(row[recall]["off"]),
            _spread(row[precision]["on"]),
            _spread(row[precision]["off"]),
        )
    return table


def checkpoint_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoints every seed has, in order, each metric's on/off over seeds."""
    seeds = report["seeds"]
    keys = [(p["tickets"], p["retrained"]) for p in seeds[0]["checkpoints"]]
    rows = []
    for n, (tickets, retrained) in enumerate(keys):
        points = [s["checkpoints"][n] for s in seeds if len(s["checkpoints"]) > n]
        row: dict[str, Any] = {
            "tickets": tickets,
            "retrained": retrained,
            "entries": statistics.fmean(p["memory_entries"] for p in points),
        }
        for metric in points[0]["on"]:
            row[metric] = {
                side: interval([p[side][metric] for p in points]) for side in ("on", "off")
            }
        rows.append(row)
    return rows


def _spread(found: dict[str, Any]) -> str:
    if found["n"] == 1:
        return f"{found['mean']:.3f}"
    return f"{found['mean']:.3f} ({found['min']:.3f}–{found['max']:.3f})"


def goals_table(report: dict[str, Any]) -> Table:
    table = Table(title="issue 32's goals, mean over seeds (95 % interval)")
    for column in ("metric", "memory alone at the cycle", "the cycle's uplift", "share"):
        table.add_column(column, justify="right")
    table.add_column("memory + retrain − retrain, end", justify="right")
    table.add_column("worst on − off", justify="right")
    for metric, entry in report["goals"].items():
        alone = entry.get("memory_alone_at_retrain")
        uplift = entry.get("cycle_uplift")
        end = entry.get("memory_plus_retrain_minus_retrain_at_end")
        share = entry.get("memory_alone_share_of_cycle")
        table.add_row(
            metric,
            _signed(alone),
            _signed(uplift),
            "n/a"
            if share is None
            else f"{share:.0%}" + (" ✓" if entry.get("memory_alone_goal_met") else " ✗"),
            _signed(end) + (" ✓" if entry.get("beats_retrain_alone") else " ✗"),
            _signed(entry["worst_on_minus_off"])
            + (" ✓" if entry["never_worse_than_off"] else " ✗"),
        )
    return table


def _signed(found: dict[str, Any] | None) -> str:
    if not found:
        return "n/a"
    text = f"{found['mean']:+.3f}"
    if found["ci95"]:
        text += f" [{found['ci95'][0]:+.3f}, {found['ci95'][1]:+.3f}]"
    return text


def print_report(report: dict[str, Any]) -> None:
    console.print(stream_table(report))
    console.print(goals_table(report))
    for seed in report["seeds"]:
        cycle = seed["cycle"]
        if cycle:
            decided = {k: v.get("promoted") for k, v in cycle["decisions"].items()}
            console.print(
                f"seed {seed['seed']}: the cycle took {cycle['wall_seconds']:.0f} s,"
                f" {cycle['status']}, promoted {decided}; the stream {seed['seconds']:.0f} s"
            )


# --- the plot -------------------------------------------------------------------------------


def plot(paths: Sequence[Path], out: Path) -> Path | None:
    """Held-out recall and precision over the stream, one column per layout: the memory on
    and off, mean over seeds with their min–max band, the cycle marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]
    if not reports:
        return None
    figure, axes = plt.subplots(
        2, len(reports), figsize=(4.2 * len(reports), 6.4), squeeze=False, sharex="col"
    )
    for column, report in enumerate(reports):
        s = report["settings"]
        rows = checkpoint_rows(report)
        for line, metric in enumerate((f"recall@{s['retrieve_k']}", f"precision@{s['context_k']}")):
            ax = axes[line][column]
            x = [r["tickets"] for r in rows]
            for side, colour, label in (
                ("on", "tab:blue", "memory on"),
                ("off", "tab:grey", "memory off"),
            ):
                ax.plot(x, [r[metric][side]["mean"] for r in rows], color=colour, label=label)
                ax.fill_between(
                    x,
                    [r[metric][side]["min"] for r in rows],
                    [r[metric][side]["max"] for r in rows],
                    color=colour,
                    alpha=0.2,
                    linewidth=0,
                )
            ax.axvline(report["retrain_at"], color="tab:red", linestyle="--", linewidth=1)
            ax.set_ylabel(metric)
            if line == 0:
                seeds = len(report["seeds"])
                ax.set_title(f"{report['layout']} ({seeds} seed{'s' * (seeds > 1)})")
            if line == 1:
                ax.set_xlabel("stream tickets clicked (dashed: the weekly cycle)")
        axes[0][column].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def results_path(label: str, layout: str) -> Path:
    """``results/flywheel_stream[_label]_<layout>.json``: one file per layout, so layouts
    run as separate processes and one plot gathers them."""
    return RESULTS_DIR / f"flywheel_stream{'_' + label if label else ''}_{layout}.json"


def plot_path(label: str) -> Path:
    return RESULTS_DIR / f"flywheel_stream{'_' + label if label else ''}.png"


def main(args: argparse.Namespace) -> int:
    path = args.results or results_path(args.label, args.layout or "entity")
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")

    report = run(args, save)
    print_report(report)
    console.print(f"results: {path}")
    if args.results is None:  # every layout of this label run so far, in the layouts' order
        drawn = plot(
            [results_path(args.label, lay) for lay in layouts.LAYOUTS], plot_path(args.label)
        )
    else:
        drawn = plot([path], path.with_suffix(".png"))
    if drawn:
        console.print(f"plot: {drawn}")
    return 0
