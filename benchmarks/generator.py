"""Generator benchmark: the drafting LLM before and after one ORPO cycle, on dstc11 human replies.

Simulated agents click on A/B drafts (extractive champion vs the shipped SmolLM2) of dstc11
training tickets; the cycle's own data path turns the stored clicks into preference pairs; one
ORPO + LoRA run trains the LLM; held-out tickets are drafted by all three generators on the same
retrieved context and scored against the replies humans wrote.

Run ``.venv/bin/python benchmarks/generator.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Python puts the script's folder first on the import path, where ``import flywheel`` would
# find benchmarks/flywheel.py instead of the product's package; the project root goes in front
# of it (``benchmarks`` is a namespace package there).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import gc
import json
import random
import shutil
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.panel import Panel
from rich.table import Table

from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.pii import redact
from aitl.core.queue import build_deferrer
from aitl.core.settings import Settings
from benchmarks import flywheel as flywheel_bench
from benchmarks import kb_pipeline
from bot.recorder import FeedbackRecorder
from flywheel import cycle
from flywheel import store as feedback_store
from flywheel.examples import PreferencePair
from flywheel.reply_metrics import faithfulness, rouge_l, score
from flywheel.train_generator import GeneratorTraining, train_generator
from rag import factory
from rag import store as rag_store
from rag.embedding import Embedder
from rag.generation import greeting
from rag.models import DraftSet
from rag.pipeline import DraftPipeline
from rag.prompts import PromptLibrary
from sandboxes.agents.policy import ShownCard, record_click, show

DSTC_DIR = kb_pipeline.DSTC_DIR
RESULTS = Path(__file__).resolve().parent / "results" / "generator.json"
SEED = 20240611
HOLDOUT = 0.1  # the last share of dstc11 val tickets (whole dialogues), never annotated
GOAL_SEMANTIC_UPLIFT = 0.084  # trained vs base LLM, relative
GOAL_ADOPTION_POINTS = 0.045  # trained vs base LLM, simulated adoption, absolute
GOAL_DRAFT_P95_S = 10.0  # a ticket's two drafts (extractive + LLM) as served
GOAL_TRAIN_S = 600.0  # one ORPO + LoRA run at the default per-cycle cap
DEFAULT_MAX_PAIRS = Settings.model_fields["generator_max_pairs"].default
READ_S = 25.0  # an agent reads the card this long before the first click
EXTRACTIVE, BASE, TRAINED = "extractive (champion)", "LLM base", "LLM trained"
GENERATORS = (EXTRACTIVE, BASE, TRAINED)
METRICS = ("rouge_l", "semantic", "faithfulness", "adoption", "as_is")
TRAINED_LABEL = "benchmark-trained"

console = kb_pipeline.console
# what training says on CPU each run; the table should not drown in it
warnings.filterwarnings("ignore", message=".*pin_memory.*")
warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)


# --- the machine ----------------------------------------------------------------------------


class LoadWatch:
    """The 1-minute load average every ``every_s`` seconds while the benchmark runs: other work
    on the two cores slows drafting and training, and the report says how much there was."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="load-watch", daemon=True)

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_s):
                return

    def figures(self) -> dict[str, float | int | None]:
        samples = self.samples or [os.getloadavg()[0]]
        return {
            "cpus": os.cpu_count(),
            "load_1min_start": round(samples[0], 2),
            "load_1min_mean": round(float(np.mean(samples)), 2),
            "load_1min_max": round(max(samples), 2),
            "process_cpu_seconds": round(time.process_time(), 1),
        }


# --- tickets and references ----------------------------------------------------------


def human_replies() -> dict[int, str]:
    """dstc11 val instance → the reply a human wrote for it (target turns only)."""
    labels = json.loads((DSTC_DIR / "val" / "labels.json").read_text(encoding="utf-8"))
    return {i: label["response"] for i, label in enumerate(labels) if label.get("target")}


def choose_tickets(
    train_cap: int, heldout_cap: int
) -> tuple[int, list[flywheel_bench.DstcTicket], list[flywheel_bench.DstcTicket]]:
    """All dstc11 val tickets split 90/10 between dialogues, each side capped from its start."""
    tickets = flywheel_bench.load_tickets(None)
    train, held = flywheel_bench.split(tickets, HOLDOUT)
    return len(tickets), train[:train_cap], held[:heldout_cap]


# --- the simulated agents ----------------------------------------------------------------


def adoption_of(similarity: float, settings: Settings) -> str:
    """The product's adoption thresholds applied to a draft's similarity to the human reply."""
    if similarity >= settings.adoption_as_is_threshold:
        return "as_is"
    if similarity >= settings.adoption_edited_threshold:
        return "edited"
    return "not_used"


REASONS = {"as_is": "accurate", "edited": "other", "not_used": "other"}  # the modal's picklist


class ReplyAgent:
    """An agent who knows the reply a human wrote for the ticket: prefers the draft closer to
    it (with probability ``noise`` the other one), then uses the preferred draft as is, edits
    it into the human reply, or leaves it unused, by the product's adoption thresholds. Clicks
    go through the recorder the Slack listeners use."""

    def __init__(
        self, agent_id: str, recorder: FeedbackRecorder, settings: Settings, noise: float, seed: int
    ) -> None:
        self.agent_id = agent_id
        self.recorder = recorder
        self.settings = settings
        self.noise = noise
        self.rng = random.Random(seed)

    def click(self, shown: ShownCard, similarity: dict[str, float], reference: str) -> dict:
        closer = max(sorted(similarity), key=lambda label: similarity[label])  # a tie: A
        other = next(label for label in sorted(similarity) if label != closer)
        flipped = self.rng.random() < self.noise
        chosen = other if flipped else closer
        adoption = adoption_of(similarity[chosen], self.settings)
        rationale: dict[str, Any] = {"reason": REASONS[adoption], "label": chosen}
        if adoption == "edited":  # the modal redacts what the agent typed
            rationale["edited_reply"] = redact(reference)
        at = shown.card.shown_at + timedelta(seconds=READ_S)
        stored = self._click(shown, "preference", chosen, at, label=chosen)
        later = at + timedelta(seconds=4)
        stored += self._click(shown, "adoption", adoption, later, label=chosen, rationale=rationale)
        return {
            "closer": closer,
            "chosen": chosen,
            "flipped": flipped,
            "adoption": adoption,
            "stored": stored,
        }

    def _click(self, shown: ShownCard, kind: str, value: str, when, *, label, **fields) -> int:
        return record_click(
            self.recorder, self.agent_id, shown, kind, value, when, label=label, **fields
        )


def similarities(encode: Callable, texts: dict[str, str], reference: str) -> dict[str, float]:
    labels = sorted(texts)
    vectors = encode([*(texts[label] for label in labels), reference])
    return {label: float(vectors[i] @ vectors[-1]) for i, label in enumerate(labels)}


# --- annotation ----------------------------------------------------------------------------


@dataclass
class AnnotationFigures:
    tickets: int
    dialogues: int
    agents: int
    noise: float
    events_stored: int
    events_by_kind: dict[str, int]
    closer: dict[str, int]  # which draft was closer to the human reply, by role
    preferred: dict[str, int]  # which draft the agents preferred (noise included), by role
    flipped: int
    adoption: dict[str, int]
    adoption_by_role: dict[str, dict[str, int]]
    similarity_mean: dict[str, float]  # by role: each draft's similarity to the human reply
    draft_s_p50: float
    draft_s_p95: float
    seconds: float


ROLE_NAMES = {"champion": "extractive", "challenger": "LLM"}


def by_role(result: DraftSet) -> dict[str, str]:
    """Role (champion / challenger) → label (A / B) of a draft set's drafts."""
    roles = {d.producer.get("role"): d.label for d in result.drafts}
    if set(roles) != {"champion", "challenger"}:
        raise SystemExit(f"drafts are not champion vs challenger: {sorted(map(str, roles))}")
    return roles


def drafted(pipeline: DraftPipeline, ticket) -> DraftSet:
    result = pipeline.draft(ticket)
    if pipeline.challenger_error:
        raise SystemExit(f"the LLM challenger failed and was retired: {pipeline.challenger_error}")
    return result


def annotate(
    settings: Settings,
    db: Database,
    pipeline: DraftPipeline,
    tickets: Sequence[flywheel_bench.DstcTicket],
    references: dict[int, str],
    encode: Callable,
    args: argparse.Namespace,
) -> AnnotationFigures:
    """Draft A/B for each training ticket, save and show them as the product does, and click."""
    recorder = FeedbackRecorder(db, build_deferrer(db.url))
    team = [
        ReplyAgent(f"UGEN{i}", recorder, settings, args.noise, args.seed + i)
        for i in range(args.agents)
    ]
    started = time.perf_counter()
    closer, preferred, adoption = Counter(), Counter(), Counter()
    adoption_by_role: dict[str, Counter] = {"extractive": Counter(), "LLM": Counter()}
    sims: dict[str, list[float]] = {"extractive": [], "LLM": []}
    stored, flipped, seconds = 0, 0, []
    with kb_pipeline._progress() as progress:
        task = progress.add_task("annotate", total=len(tickets), rate="")
        for n, item in enumerate(tickets):
            result = drafted(pipeline, item.ticket)
            seconds.append(result.timings_ms["total"] / 1000)
            roles = {label: ROLE_NAMES[role] for role, label in by_role(result).items()}
            with db.connection() as conn:
                set_id = rag_store.save_draft_set(
                    conn, item.ticket_ref, redact(result.ticket.query_text()), result
                )
            shown = show(db, set_id, item.ticket_ref)
            with db.connection() as conn:
                texts = {d.label: d.text for d in rag_store.drafts_of_set(conn, set_id)}
            similarity = similarities(encode, texts, references[item.instance])
            clicks = team[n % len(team)].click(shown, similarity, references[item.instance])
            stored += clicks["stored"]
            flipped += clicks["flipped"]
            closer[roles[clicks["closer"]]] += 1
            preferred[roles[clicks["chosen"]]] += 1
            adoption[clicks["adoption"]] += 1
            adoption_by_role[roles[clicks["chosen"]]][clicks["adoption"]] += 1
            for label, value in similarity.items():
                sims[roles[label]].append(value)
            progress.update(task, advance=1, rate=f"{stored:,} events")
    with db.connection() as conn:
        kinds = Counter(e.kind for e in feedback_store.events(conn))
    return AnnotationFigures(
        tickets=len(tickets),
        dialogues=len({t.dialogue for t in tickets}),
        agents=args.agents,
        noise=args.noise,
        events_stored=stored,
        events_by_kind=dict(sorted(kinds.items())),
        closer=dict(closer),
        preferred=dict(preferred),
        flipped=flipped,
        adoption=dict(adoption),
        adoption_by_role={role: dict(c) for role, c in adoption_by_role.items()},
        similarity_mean={role: _mean(v) for role, v in sims.items()},
        draft_s_p50=_percentile(seconds, 50),
        draft_s_p95=_percentile(seconds, 95),
        seconds=round(time.perf_counter() - started, 1),
    )


# --- the cycle's training pairs ------------------------------------------------------------


@dataclass
class PairFigures:
    events: int
    judge: str
    judge_filtered: dict[str, Any]
    agent_weights: dict[str, float]
    cycle_train_tickets: int
    cycle_eval_tickets: int
    cycle_eval_references: int
    # a cycle needs AITL_FLYWHEEL_MIN_EVAL_QUERIES held-out tickets with a relevant article
    # before it trains anything; these agents mark no relevance, so this is 0 here
    cycle_eval_queries: int
    pairs_built: int
    cap: int
    pairs_used: int
    left_by_cap: int
    from_stored_events: bool
    built_by_source: dict[str, int]
    used_by_source: dict[str, int]
    # whether Flywheel.run on these events would train the generator, and if not, why
    cycle_would_train: bool
    cycle_would_not_because: str | None


def training_pairs(settings: Settings, db: Database) -> tuple[list[PreferencePair], PairFigures]:
    """The preference pairs a cycle run now would train on: the stored events judged by the
    rule judge (``cycle.prepare``), capped as ``Flywheel._cycle`` and ``_generator`` cap them."""
    judge = cycle.default_judge(settings)
    prepared = cycle.prepare(settings, db, judge, datetime.now(UTC))
    data, _ = prepared.data.capped(settings.flywheel_max_examples)
    pairs = data.generator[-settings.generator_max_pairs :]
    with db.connection() as conn:
        stored = {e.id: e for e in feedback_store.events(conn)}
    from_events = all(p.event_ids and all(i in stored for i in p.event_ids) for p in pairs)

    why_not = None  # Flywheel._check_enough, then _generator's own minimum
    if len(data.eval_queries) < settings.flywheel_min_eval_queries:
        why_not = (
            f"{len(data.eval_queries)} held-out tickets with a relevant article "
            f"(AITL_FLYWHEEL_MIN_EVAL_QUERIES={settings.flywheel_min_eval_queries}): the "
            "cycle stops before training anything"
        )
    elif len(pairs) < settings.flywheel_min_examples:
        why_not = (
            f"{len(pairs)} pairs (AITL_FLYWHEEL_MIN_EXAMPLES={settings.flywheel_min_examples})"
        )

    def sources(found: Sequence[PreferencePair]) -> dict[str, int]:
        return dict(Counter(pair_source(p, stored, prepared.context) for p in found))

    return pairs, PairFigures(
        events=len(prepared.events),
        judge=judge.name,
        judge_filtered=cycle.filtered_shares(prepared.events, prepared.kept_ids)["generator"],
        agent_weights={a.agent_id: round(a.weight, 4) for a in prepared.agents.values()},
        cycle_train_tickets=data.train_tickets,
        cycle_eval_tickets=data.eval_tickets,
        cycle_eval_references=len(data.eval_references),
        cycle_eval_queries=len(data.eval_queries),
        pairs_built=len(data.generator),
        cap=settings.generator_max_pairs,
        pairs_used=len(pairs),
        left_by_cap=len(data.generator) - len(pairs),
        from_stored_events=from_events,
        built_by_source=sources(data.generator),
        used_by_source=sources(pairs),
        cycle_would_train=why_not is None,
        cycle_would_not_because=why_not,
    )


def pair_source(pair: PreferencePair, events: dict, context) -> str:
    """What a pair prefers to what, named by the click it came from: "LLM > extractive"."""
    event = events[pair.event_ids[0]]
    info = context.sets[event.draft_set_id]

    def role(label: str) -> str:
        return ROLE_NAMES.get(info.drafts[label].producer.get("role"), "?")

    if event.kind == "preference":
        other = "B" if event.value == "A" else "A"
        return f"preference: {role(event.value)} > {role(other)}"
    label = event.rationale.get("label")
    if event.value == "edited":
        return f"edited: human reply > {role(label)}"
    other = "B" if label == "A" else "A"
    return f"{event.value}: {role(label)} > {role(other)}"


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainingFigures:
    base: str
    adapter: str
    pairs: int
    epochs: float
    seed: int
    steps: int
    train_loss: float | None
    seconds: float  # train_generator's own clock (model load to adapter saved)
    wall_seconds: float
    pairs_per_s: float | None


def train(settings: Settings, pairs: Sequence[PreferencePair]) -> TrainingFigures:
    """One ORPO + LoRA run on the shipped LLM, with the cycle's epochs and seed."""
    base = factory.llm_model_path(settings)
    out = settings.models_dir / "generator" / "benchmark"
    config = GeneratorTraining(epochs=settings.generator_epochs, seed=settings.flywheel_seed)
    console.print(f"training the LLM (ORPO + LoRA on {base.name}) on {len(pairs)} pairs …")
    started = time.perf_counter()
    trained = train_generator(base, pairs, out, config)
    wall = time.perf_counter() - started
    gc.collect()
    return TrainingFigures(
        base=str(base),
        adapter=trained.path,
        pairs=trained.examples,
        epochs=config.epochs,
        seed=config.seed,
        steps=trained.steps,
        train_loss=trained.train_loss,
        seconds=round(trained.seconds, 1),
        wall_seconds=round(wall, 1),
        pairs_per_s=round(trained.examples / trained.seconds, 3) if trained.seconds else None,
    )


# --- held-out drafting and scoring ---------------------------------------------------------


@dataclass
class HeldOutRow:
    instance: int
    dialogue: int
    ticket: str
    reference: str
    context: list[int]
    passages: list[str]  # what the generators read: title and text of the first passages
    replies: dict[str, str]
    adapters: dict[str, str | None]  # what each LLM's producer named as its adapter
    two_drafts_ms: dict[str, float]  # pipeline total (retrieve, rerank, both drafts), per LLM
    generate_ms: dict[str, float]
    same_context: bool
    same_extractive: bool


def draft_held_out(
    settings: Settings,
    base: DraftPipeline,
    trained: DraftPipeline,
    tickets: Sequence[flywheel_bench.DstcTicket],
    references: dict[int, str],
) -> list[HeldOutRow]:
    """Each held-out ticket through the served pipeline twice, LLM challenger base then
    trained: the same retrieval gives both LLMs and the extractive champion the same context."""
    rows = []
    shown = factory.variants(settings)[0].max_passages
    with kb_pipeline._progress() as progress:
        task = progress.add_task("held out", total=len(tickets), rate="")
        for item in tickets:
            first, second = drafted(base, item.ticket), drafted(trained, item.ticket)
            one, two = by_role(first), by_role(second)
            texts = {d.label: d for d in first.drafts}
            again = {d.label: d for d in second.drafts}
            context = [c.chunk_id for c in first.context]
            rows.append(
                HeldOutRow(
                    instance=item.instance,
                    dialogue=item.dialogue,
                    ticket=item.ticket.query_text(),
                    reference=references[item.instance],
                    context=context,
                    passages=[f"{c.title}\n{c.text}" for c in first.context[:shown]],
                    replies={
                        EXTRACTIVE: texts[one["champion"]].text,
                        BASE: texts[one["challenger"]].text,
                        TRAINED: again[two["challenger"]].text,
                    },
                    adapters={
                        BASE: texts[one["challenger"]].producer.get("adapter"),
                        TRAINED: again[two["challenger"]].producer.get("adapter"),
                    },
                    two_drafts_ms={
                        BASE: first.timings_ms["total"],
                        TRAINED: second.timings_ms["total"],
                    },
                    generate_ms={
                        BASE: first.timings_ms["generate"],
                        TRAINED: second.timings_ms["generate"],
                    },
                    same_context=context == [c.chunk_id for c in second.context],
                    same_extractive=texts[one["champion"]].text == again[two["champion"]].text,
                )
            )
            progress.update(task, advance=1, rate="")
    return rows


@dataclass
class Scored:
    """One generator's per-ticket scores (None: faithfulness had no claim to check)."""

    means: dict[str, float | None]
    per_ticket: dict[str, list[float | None]]
    product_score: dict[str, Any]  # flywheel.reply_metrics.score, as the cycle reports it


def score_generators(
    rows: Sequence[HeldOutRow], settings: Settings, encode: Callable, boilerplate: Sequence[str]
) -> dict[str, Scored]:
    references = [r.reference for r in rows]
    passages = [r.passages for r in rows]
    reference_vectors = encode(references)
    found = {}
    for name in GENERATORS:
        replies = [r.replies[name] for r in rows]
        product = score(replies, references, passages, encode, boilerplate)
        semantic = [float(x) for x in np.sum(encode(replies) * reference_vectors, axis=1)]
        per_ticket: dict[str, list[float | None]] = {
            "rouge_l": [rouge_l(r, ref) for r, ref in zip(replies, references, strict=True)],
            "semantic": semantic,
            "faithfulness": [
                faithfulness(r, p, boilerplate) for r, p in zip(replies, passages, strict=True)
            ],
            "adoption": [float(adoption_of(s, settings) != "not_used") for s in semantic],
            "as_is": [float(adoption_of(s, settings) == "as_is") for s in semantic],
        }
        means = {metric: _mean_known(values) for metric, values in per_ticket.items()}
        for metric in ("rouge_l", "semantic", "faithfulness"):  # the product's means, unrounded
            expected = getattr(product, metric)
            if (expected is None) != (means[metric] is None) or (
                expected is not None and abs(expected - means[metric]) > 1e-5
            ):
                raise AssertionError(f"{name} {metric}: {means[metric]} vs score() {expected}")
        found[name] = Scored(means, per_ticket, product.as_metrics())
    return found


def bootstrap(
    scored: dict[str, Scored], tickets: int, resamples: int, seed: int
) -> tuple[dict[str, dict[str, list[float] | None]], dict[str, dict[str, Any]]]:
    """Seeded 95% percentile intervals of each generator's means, and of the paired gaps
    between generators (one resampling of the tickets shared by every figure)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, tickets, size=(resamples, tickets)) if tickets > 1 else None

    def means_of(values: Sequence[float | None]) -> np.ndarray | None:
        if picks is None:
            return None
        array = np.array([np.nan if v is None else v for v in values], dtype=float)
        with warnings.catch_warnings():  # a resample that drew only None: "empty slice"
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return np.nanmean(array[picks], axis=1)

    def interval(draws: np.ndarray | None) -> list[float] | None:
        if draws is None or np.all(np.isnan(draws)):
            return None
        return [round(float(np.nanpercentile(draws, q)), 4) for q in (2.5, 97.5)]

    intervals = {
        name: {m: interval(means_of(s.per_ticket[m])) for m in METRICS}
        for name, s in scored.items()
    }
    gaps: dict[str, dict[str, Any]] = {}
    for after, before in ((TRAINED, BASE), (TRAINED, EXTRACTIVE), (BASE, EXTRACTIVE)):
        found = {}
        for metric in METRICS:
            a, b = scored[after].per_ticket[metric], scored[before].per_ticket[metric]
            paired = [None if x is None or y is None else x - y for x, y in zip(a, b, strict=True)]
            mean_a, mean_b = scored[after].means[metric], scored[before].means[metric]
            relative = None
            if mean_a is not None and mean_b:
                relative = round((mean_a - mean_b) / mean_b, 4)
            draws_a, draws_b = means_of(a), means_of(b)
            relative_ci = None
            if draws_a is not None and draws_b is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    relative_ci = interval((draws_a - draws_b) / draws_b)
            found[metric] = {
                "after": _round(mean_a),
                "before": _round(mean_b),
                "gap": _round(_mean_known(paired)),
                "gap_ci": interval(means_of(paired)),
                "relative": relative,
                "relative_ci": relative_ci,
                "tickets": sum(v is not None for v in paired),
            }
        gaps[f"{after} − {before}"] = found
    return intervals, gaps


def latency(rows: Sequence[HeldOutRow]) -> dict[str, dict[str, float | None]]:
    found = {}
    for name in (BASE, TRAINED):
        total = [r.two_drafts_ms[name] / 1000 for r in rows]
        generate = [r.generate_ms[name] / 1000 for r in rows]
        found[name] = {
            "two_drafts_p50_s": _percentile(total, 50),
            "two_drafts_p95_s": _percentile(total, 95),
            "two_drafts_max_s": round(max(total), 3) if total else None,
            "generate_p50_s": _percentile(generate, 50),
            "generate_p95_s": _percentile(generate, 95),
        }
    return found


# --- goals -----------------------------------------------------------------------------------


def goals(
    gaps: dict[str, dict[str, Any]],
    timing: dict[str, dict[str, float | None]],
    training: TrainingFigures,
    pairs: PairFigures,
) -> dict[str, dict[str, Any]]:
    over_base = gaps[f"{TRAINED} − {BASE}"]
    semantic, adoption = over_base["semantic"], over_base["adoption"]
    p95 = [t["two_drafts_p95_s"] for t in timing.values() if t["two_drafts_p95_s"] is not None]
    at_default = pairs.cap == DEFAULT_MAX_PAIRS and pairs.pairs_used == DEFAULT_MAX_PAIRS
    return {
        "helpfulness_uplift": {
            "goal": GOAL_SEMANTIC_UPLIFT,
            "measured": semantic["relative"],
            "ci": semantic["relative_ci"],
            "rouge_l": over_base["rouge_l"]["relative"],
            "pass": semantic["relative"] is not None
            and semantic["relative"] >= GOAL_SEMANTIC_UPLIFT,
        },
        "adoption_uplift": {
            "goal": GOAL_ADOPTION_POINTS,
            "measured": adoption["gap"],
            "ci": adoption["gap_ci"],
            "pass": adoption["gap"] is not None and adoption["gap"] >= GOAL_ADOPTION_POINTS,
        },
        "drafting_p95_seconds": {
            "goal": GOAL_DRAFT_P95_S,
            "measured": max(p95) if p95 else None,
            "pass": bool(p95) and max(p95) <= GOAL_DRAFT_P95_S,
        },
        "training_seconds": {
            "goal": GOAL_TRAIN_S,
            "measured": training.seconds,
            "pairs": training.pairs,
            "at_default_cap": at_default,
            # only a run that trained on the default cap's full 48 pairs measures this goal
            "pass": training.seconds <= GOAL_TRAIN_S if at_default else None,
        },
    }


def versus_champion(gaps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Does the trained LLM beat the extractive champion, metric by metric, and by how much."""
    found = gaps[f"{TRAINED} − {EXTRACTIVE}"]
    metrics = {m: found[m] for m in ("rouge_l", "semantic", "faithfulness", "adoption")}
    ahead = [m for m, f in metrics.items() if f["gap"] is not None and f["gap"] > 0]
    return {"metrics": metrics, "ahead_on": ahead, "beats_on_every_metric": len(ahead) == 4}


# --- report ----------------------------------------------------------------------------------


def scores_table(
    scores: dict[str, dict[str, float | None]],
    intervals: dict[str, dict[str, list[float] | None]],
    tickets: int,
) -> Table:
    table = Table(title=f"held-out dstc11 tickets ({tickets}), against the human replies")
    table.add_column("generator", justify="left")
    for name in ("ROUGE-L", "semantic", "faithfulness", "adoption (used)", "as is"):
        table.add_column(name, justify="right")
    for name, means in scores.items():
        cells = [_with_ci(means[m], intervals[name][m]) for m in METRICS[:4]]
        table.add_row(name, *cells, _number(means["as_is"]))
    return table


def gaps_table(gaps: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="paired gaps over the same tickets (95% bootstrap intervals)")
    table.add_column("comparison", justify="left")
    for name in ("Δ ROUGE-L", "Δ semantic", "semantic, relative", "Δ faithfulness", "Δ adoption"):
        table.add_column(name, justify="right")
    for name, found in gaps.items():
        table.add_row(
            name,
            _with_ci(found["rouge_l"]["gap"], found["rouge_l"]["gap_ci"], signed=True),
            _with_ci(found["semantic"]["gap"], found["semantic"]["gap_ci"], signed=True),
            _percent_ci(found["semantic"]["relative"], found["semantic"]["relative_ci"]),
            _with_ci(found["faithfulness"]["gap"], found["faithfulness"]["gap_ci"], signed=True),
            _points(found["adoption"]["gap"], found["adoption"]["gap_ci"]),
        )
    return table


def flow_table(report: dict[str, Any]) -> Table:
    a, p, t = report["annotation"], report["pairs"], report["training"]
    table = Table(title="annotation, training pairs and training")
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    lines = [
        ("training tickets (dialogues)", f"{a['tickets']:,} ({a['dialogues']:,})"),
        ("agents, preference noise", f"{a['agents']}, {a['noise']:.0%}"),
        ("events stored (by kind)", f"{a['events_stored']:,} {a['events_by_kind']}"),
        ("closer to the human reply", _counts(a["closer"])),
        ("preferred by the agents", f"{_counts(a['preferred'])} ({a['flipped']} flipped)"),
        ("adoption of the preferred draft", _counts(a["adoption"])),
        ("  … of the LLM's drafts", _counts(a["adoption_by_role"]["LLM"])),
        ("  … of the extractive drafts", _counts(a["adoption_by_role"]["extractive"])),
        ("similarity to the human reply", _counts(a["similarity_mean"])),
        ("two drafts p50 / p95 (training tickets)", f"{a['draft_s_p50']} / {a['draft_s_p95']} s"),
        (
            "judge (generator events filtered)",
            f"{p['judge']}: {p['judge_filtered']['filtered']} of {p['judge_filtered']['events']}",
        ),
        (
            "cycle split (train / held-out tickets)",
            f"{p['cycle_train_tickets']} / {p['cycle_eval_tickets']}",
        ),
        (
            "pairs built from stored events",
            f"{p['pairs_built']:,}: {_counts(p['built_by_source'])}",
        ),
        (
            f"pairs used (newest {p['cap']}, AITL_GENERATOR_MAX_PAIRS)",
            f"{p['pairs_used']}: {_counts(p['used_by_source'])}",
        ),
        ("left by the cap", f"{p['left_by_cap']:,}"),
        (
            "Flywheel.run on these events",
            "would train the LLM"
            if p["cycle_would_train"]
            else f"would not: {p['cycle_would_not_because']}; trained here regardless",
        ),
        ("ORPO + LoRA steps, loss", f"{t['steps']}, {_number(t['train_loss'])}"),
        ("training time (pairs/s)", f"{t['seconds']:,.1f} s ({t['pairs_per_s']})"),
    ]
    for label, value in lines:
        table.add_row(label, value)
    return table


def latency_table(timing: dict[str, dict[str, float | None]]) -> Table:
    table = Table(title="a held-out ticket's two drafts as served (extractive + LLM), seconds")
    for name in ("LLM drafting", "two drafts p50", "p95", "max", "LLM stage p50", "p95"):
        table.add_column(name, justify="left" if name == "LLM drafting" else "right")
    for name, t in timing.items():
        table.add_row(
            name,
            *(
                _number(t[k], 2)
                for k in (
                    "two_drafts_p50_s",
                    "two_drafts_p95_s",
                    "two_drafts_max_s",
                    "generate_p50_s",
                    "generate_p95_s",
                )
            ),
        )
    return table


def goals_table(found: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="goals")
    for name, justify in (("goal", "left"), ("measured", "right"), ("verdict", "center")):
        table.add_column(name, justify=justify)
    for name, goal in found.items():
        measured = goal["measured"]
        if name == "helpfulness_uplift":
            shown = (
                f"semantic {_percent_ci(measured, goal['ci'])} (≥ {goal['goal']:+.1%}); "
                f"ROUGE-L {_percent(goal['rouge_l'])}"
            )
        elif name == "adoption_uplift":
            shown = f"{_points(measured, goal['ci'])} (≥ +{goal['goal'] * 100:.1f} points)"
        elif name == "drafting_p95_seconds":
            shown = f"{_number(measured, 2)} s (≤ {goal['goal']:.0f} s)"
        else:
            shown = f"{measured:,.1f} s on {goal['pairs']} pairs (≤ {goal['goal']:.0f} s)"
            if not goal["at_default_cap"]:
                shown += f"; not the default {DEFAULT_MAX_PAIRS} pairs"
        verdict = "[dim]n/a[/]" if goal["pass"] is None else kb_pipeline._verdict(goal["pass"])
        table.add_row(name, shown, verdict)
    return table


def champion_lines(found: dict[str, Any]) -> list[str]:
    names = {
        "rouge_l": "ROUGE-L",
        "semantic": "semantic",
        "faithfulness": "faithfulness",
        "adoption": "adoption",
    }
    verdict = (
        "The trained LLM beats the extractive champion on every metric."
        if found["beats_on_every_metric"]
        else "The trained LLM does not beat the extractive champion"
        + (f" (ahead only on {', '.join(found['ahead_on'])})." if found["ahead_on"] else ".")
    )
    lines = [verdict]
    for metric, f in found["metrics"].items():
        if f["gap"] is None:
            continue
        where = "ahead by" if f["gap"] > 0 else "trails by"
        gap = (
            f"{abs(f['gap']) * 100:.1f} points"
            if metric == "adoption"
            else f"{abs(f['gap']):.4f} ({_percent(f['relative'])})"
        )
        lines.append(
            f"  {names[metric]}: trained {f['after']:.4f} vs extractive {f['before']:.4f}, "
            f"{where} {gap}; 95% CI of the gap {_interval(f['gap_ci'])}"
        )
    return lines


def print_report(report: dict[str, Any]) -> None:
    console.print(flow_table(report))
    console.print(
        scores_table(report["scores"], report["intervals"], report["data"]["heldout_tickets"])
    )
    console.print(gaps_table(report["gaps"]))
    console.print(latency_table(report["latency"]))
    console.print(goals_table(report["goals"]))
    for line in champion_lines(report["versus_champion"]):
        console.print(line)
    checks = report["checks"]
    if checks["context_mismatches"] or checks["extractive_mismatches"]:
        console.print(
            f"[yellow]retrieval differed between the two passes on "
            f"{checks['context_mismatches']} tickets, the extractive draft on "
            f"{checks['extractive_mismatches']}[/]"
        )
    console.print(f"caps: {json.dumps(report['caps'])}")
    console.print(f"phases (s): {json.dumps(report['phases_seconds'])}")
    console.print(f"settings: {json.dumps(report['settings'], default=str)}")
    m = report["machine"]
    console.print(
        f"machine: {m['cpus']} CPUs, 1-minute load average {m['load_1min_start']} at the start, "
        f"{m['load_1min_mean']} on average, {m['load_1min_max']} at most; this process used "
        f"{m['process_cpu_seconds']:,} CPU seconds ({m['process_cpu_share']} CPUs on average)"
    )
    console.print(f"results written to {report['results']}; total {report['total_seconds']} s")
    missed = [name for name, goal in report["goals"].items() if goal["pass"] is False]
    for name in missed:
        console.print(Panel(f"[bold]MISS: {name}[/] {report['goals'][name]}", style="bold red"))
    if not missed:
        console.print("[bold green]all measured goals met[/]")


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if values else float("nan")


def _mean_known(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(ci: list[float] | None, signed: bool = True) -> str:
    if ci is None:
        return "n/a"
    form = "+.4f" if signed else ".4f"
    return f"[{ci[0]:{form}}, {ci[1]:{form}}]"


def _with_ci(value: float | None, ci: list[float] | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    form = "+.4f" if signed else ".4f"
    return f"{value:{form}} {_interval(ci, signed)}" if ci else f"{value:{form}}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _percent_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1%} [{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else f"{value:+.1%}"


def _points(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "n/a"
    shown = f"{value * 100:+.1f} points"
    return f"{shown} [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else shown


def _counts(found: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none"


def _settings_used(settings: Settings) -> dict[str, Any]:
    names = (
        "embedding_model",
        "retrieve_k",
        "context_k",
        "generator",
        "llm_challenger",
        "challenger_share",
        "hf_model_path",
        "hf_max_new_tokens",
        "hf_copy_bias",
        "hf_repetition_penalty",
        "hf_no_repeat_ngram",
        "draft_a_temperature",
        "adoption_as_is_threshold",
        "adoption_edited_threshold",
        "judge",
        "judge_min_read_s",
        "flywheel_holdout",
        "flywheel_min_examples",
        "flywheel_max_examples",
        "generator_max_pairs",
        "generator_epochs",
        "flywheel_seed",
        "torch_threads",
    )
    return {name: getattr(settings, name) for name in names}


# --- main --------------------------------------------------------------------------------


EPILOG = f"""\
Goals (PASS/MISS; the exit code is 0 either way):
  trained vs base LLM, semantic similarity to the human reply: {GOAL_SEMANTIC_UPLIFT:+.1%} or more
  trained vs base LLM, simulated adoption rate: +{GOAL_ADOPTION_POINTS * 100:.1f} points or more
  a held-out ticket's two drafts (extractive + LLM), p95: {GOAL_DRAFT_P95_S:.0f} s or less
  one ORPO + LoRA run on the default cap of {DEFAULT_MAX_PAIRS} pairs: {GOAL_TRAIN_S:.0f} s or less
The trained LLM is also set against the extractive champion on every metric. Means come with
seeded 95% bootstrap intervals; the JSON report (every held-out reply included) goes to
--results. Offline, on a temporary embedded PostgreSQL. AITL_* variables apply, except what
the benchmark fixes: AITL_GENERATOR=extractive, AITL_LLM_CHALLENGER=true,
AITL_CHALLENGER_SHARE=1, AITL_DRAFT_A_TEMPERATURE=0, AITL_JUDGE=rules. See benchmarks/README.md.
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\nRun")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--train-tickets",
        type=int,
        default=60,
        help="training tickets drafted A/B and clicked: the first of dstc11 val's first 90%% "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--heldout",
        type=int,
        default=50,
        help="held-out tickets scored: the first of dstc11 val's last 10%%, whole dialogues away "
        "from the training ones, never clicked (default %(default)s)",
    )
    parser.add_argument(
        "--agents", type=int, default=4, help="simulated agents, round-robin (default %(default)s)"
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.2,
        help="chance an agent prefers (and then adopts or edits) the draft farther from the human "
        "reply (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="agent i is seeded seed + i; also seeds the bootstrap (default %(default)s)",
    )
    parser.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help=f"AITL_GENERATOR_MAX_PAIRS: newest pairs trained on (default: the setting, "
        f"{DEFAULT_MAX_PAIRS})",
    )
    parser.add_argument(
        "--train-seed", type=int, default=None, help="AITL_FLYWHEEL_SEED (default: the setting, 42)"
    )
    parser.add_argument(
        "--kb-docs",
        type=int,
        default=None,
        help="cap on dstc11 knowledge documents ingested (default: all 10,882)",
    )
    parser.add_argument(
        "--llm-path",
        type=Path,
        default=None,
        help="a local causal LM folder instead of the shipped SmolLM2 (AITL_HF_MODEL_PATH)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        help="bootstrap resamples for the 95%% intervals (default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data dir (embedded Postgres, models); default: a fresh temporary one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    for name in ("train_tickets", "heldout", "agents", "bootstrap"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.noise <= 1:
        parser.error("--noise must be within [0, 1]")
    if args.max_pairs is not None and args.max_pairs < 2:
        parser.error("--max-pairs must be at least 2")
    return args


def configure(settings: Settings, args: argparse.Namespace) -> Settings:
    """The product's settings with the extractive champion, the local LLM as challenger on
    every ticket, draft A greedy, the rule judge, and the options' overrides."""
    update: dict[str, Any] = {
        "generator": "extractive",
        "llm_challenger": True,
        "challenger_share": 1.0,
        "draft_a_temperature": 0.0,
        "judge": "rules",
    }
    if args.llm_path is not None:
        update["hf_model_path"] = args.llm_path.resolve()
    if args.max_pairs is not None:
        update["generator_max_pairs"] = args.max_pairs
    if args.train_seed is not None:
        update["flywheel_seed"] = args.train_seed
    return settings.model_copy(update=update)


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    with LoadWatch() as load:
        report = _run(settings, args)
    report["machine"] = load.figures()
    report["machine"]["process_cpu_share"] = round(
        report["machine"]["process_cpu_seconds"] / max(report["total_seconds"], 1e-9), 2
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report)
    return report


def _run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    settings = configure(settings, args)
    references = human_replies()
    total, train_set, held = choose_tickets(args.train_tickets, args.heldout)
    caps = {
        "train_tickets": len(train_set),
        "heldout_tickets": len(held),
        "max_pairs": settings.generator_max_pairs,
        "kb_docs": args.kb_docs or "all",
        "agents": args.agents,
        "noise": args.noise,
    }
    console.print(
        f"tickets: {len(train_set):,} training and {len(held):,} held out (of {total:,} dstc11 "
        f"val tickets); pairs capped at {settings.generator_max_pairs}"
    )
    phases: dict[str, float] = {}
    last = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        phases[name] = round(now - last[0], 1)
        last[0] = now

    db = open_database(settings)
    try:
        with db.connection() as conn:
            if feedback_store.events(conn):
                raise SystemExit("the database already holds feedback events: use a fresh one")
        ingestor = factory.ingestor(settings, db)
        kb_pipeline.warm_up_ingest(ingestor)
        docs = len(kb_pipeline.dstc_documents(10**9))
        docs = min(docs, args.kb_docs) if args.kb_docs else docs
        ingest = kb_pipeline.build_kb(ingestor, db, docs, settings.chunk_size)
        encode = Embedder(settings.embedding_model).encode
        lap("knowledge base")
        base_path = factory.llm_model_path(settings)  # the shipped one converts once, here
        lap("LLM prepared")
        console.print(f"LLM: {base_path} ({phases['LLM prepared']} s to prepare)")
        base = factory.pipeline(settings, db, challenger=factory.local_drafter(settings, None))
        base.warm()
        annotation = annotate(settings, db, base, train_set, references, encode, args)
        lap("training tickets drafted and clicked")
        pairs, pair_figures = training_pairs(settings, db)
        if not pairs:
            raise SystemExit(f"no preference pairs to train on: {asdict(pair_figures)}")
        lap("pairs built")
        training = train(settings, pairs)
        lap("trained")
        challenger = factory.local_drafter(settings, Path(training.adapter), label=TRAINED_LABEL)
        trained = factory.pipeline(settings, db, challenger=challenger)
        trained.warm()
        rows = draft_held_out(settings, base, trained, held, references)
        lap("held-out tickets drafted")
    finally:
        db.close()
    prompts = PromptLibrary(settings.prompts_dir)
    subjects = sorted({t.ticket.subject.strip() for t in held})
    boilerplate = [greeting(prompts, s) for s in subjects]
    boilerplate.append(prompts.text("closing.txt"))
    scored = score_generators(rows, settings, encode, boilerplate)
    intervals, gaps = bootstrap(scored, len(rows), args.bootstrap, args.seed)
    timing = latency(rows)
    lap("scored")
    report = {
        "benchmark": "generator",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": _settings_used(settings),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "caps": caps,
        "data": {
            "kb_documents": ingest.dstc_documents,
            "kb_chunks": ingest.chunks_in_kb,
            "ingest_seconds": round(ingest.seconds, 1),
            "llm": str(base_path),
            "llm_prepare_seconds": phases["LLM prepared"],
            "dstc11_val_tickets": total,
            "training_tickets": len(train_set),
            "heldout_tickets": len(rows),
            "heldout_dialogues": len({r.dialogue for r in rows}),
        },
        "annotation": asdict(annotation),
        "pairs": asdict(pair_figures),
        "training": asdict(training),
        "scores": {name: {m: _round(v) for m, v in s.means.items()} for name, s in scored.items()},
        "product_scores": {name: s.product_score for name, s in scored.items()},
        "intervals": intervals,
        "gaps": gaps,
        "latency": timing,
        "goals": goals(gaps, timing, training, pair_figures),
        "versus_champion": versus_champion(gaps),
        "checks": {
            "context_mismatches": sum(not r.same_context for r in rows),
            "extractive_mismatches": sum(not r.same_extractive for r in rows),
            "trained_adapter_served": all(r.adapters[TRAINED] == TRAINED_LABEL for r in rows),
            "base_without_adapter": all(r.adapters[BASE] is None for r in rows),
        },
        "boilerplate": boilerplate,
        "heldout": [
            asdict(r) | {"scores": {n: _ticket_scores(scored[n], i) for n in GENERATORS}}
            for i, r in enumerate(rows)
        ],
        "phases_seconds": phases,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    report["results"] = str(args.results)
    return report


def _ticket_scores(scored: Scored, index: int) -> dict[str, float | None]:
    return {m: _round(values[index]) for m, values in scored.per_ticket.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-generator-")) if temporary else args.data_dir
    settings = kb_pipeline.make_settings(data_dir)
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
