"""One turn of the flywheel: judge the clicks, build the datasets, train, evaluate, gate, promote.

Only one cycle runs at a time (a Postgres advisory lock). Nothing live changes until the gate
has decided: a retriever goes live by an atomic index switch, a reranker or generator by one
registry update. A cycle that fails, or a process killed mid-run, leaves the live models as
they were; the next cycle marks the abandoned run failed and starts clean.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aitl.core.db import Database
from aitl.core.leader import Leadership
from aitl.core.settings import Settings
from flywheel import datasets, judge_watch, reliability, store
from flywheel.datasets import Datasets
from flywheel.encoding import EncodingLog
from flywheel.evaluation import CONTEXT_K, RETRIEVE_K, EvalQuery, EvalResult, RetrieverEvaluator
from flywheel.examples import RerankExample
from flywheel.exceptions import CycleFailed, FlywheelError, NotEnoughData, RunInProgress
from flywheel.generator_eval import decide_generator, describe
from flywheel.judge import (
    RULES,
    Judge,
    JudgeContext,
    LLMJudge,
    NoJudge,
    RuleJudge,
    RuleSettings,
)
from flywheel.judge_watch import JudgeWatch
from flywheel.mining import mined_negatives
from flywheel.registry import Decision, GatePolicy, Registry, decide
from rag import encoders, factory
from rag import exceptions as rag_exceptions
from rag import store as rag_store
from rag.chunking import embedding_text
from rag.embedding import Embedder
from rag.prompts import PromptLibrary
from rag.versions import KnownVectors

log = logging.getLogger(__name__)
RUN_LOCK = "aitl.flywheel"
GATED = ("retriever", "reranker")  # the kinds the IR gate decides (GatePolicy.order)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Accepted:
    """A challenger the gate accepted, promoted once the whole cycle has succeeded."""

    kind: str
    version: str
    reason: str
    known: KnownVectors | None = None  # a retriever's evaluated chunk vectors


@dataclass
class CycleReport:
    run_id: int
    status: str
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # told to the admins with the outcome


class Flywheel:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        judge: Judge | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.versions = factory.embedding_versions(settings, db)
        self.registry = Registry(db, self.versions)
        self.judge = judge or default_judge(settings)
        self.progress = progress or (lambda step: log.info("flywheel: %s", step))
        self.policy = GatePolicy.from_settings(settings)

    def run(self, trigger: str = "cli") -> CycleReport:
        lock = Leadership(self.db.url, RUN_LOCK)
        if not lock.try_acquire():
            raise RunInProgress()
        try:
            return self._locked_run(trigger)
        finally:
            lock.release()

    def _locked_run(self, trigger: str) -> CycleReport:
        started = time.monotonic()
        cutoff = datetime.now(UTC)
        with self.db.connection() as conn:
            store.fail_abandoned_runs(conn)
            run_id = store.start_run(conn, trigger, cutoff, self._config())
        report = CycleReport(run_id, "running")
        try:
            self._cycle(report, cutoff)
            report.status = "succeeded"
        except NotEnoughData as exc:
            report.status, report.error = "not_enough_data", str(exc)
        except Exception as exc:
            report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
            raise CycleFailed(run_id, report.error) from exc
        finally:
            report.seconds = round(time.monotonic() - started, 1)
            self._finish(report)
        return report

    def _finish(self, report: CycleReport) -> None:
        with self.db.connection() as conn:
            store.finish_run(
                conn,
                report.run_id,
                report.status,
                counts=report.counts,
                metrics=report.metrics,
                decisions=report.decisions,
                artefacts={**report.artefacts, "seconds": report.seconds},
                error=report.error,
            )

    def _config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "judge": self.judge.name,
            "holdout": s.flywheel_holdout,
            "seed": s.flywheel_seed,
            "min_examples": s.flywheel_min_examples,
            "max_examples": s.flywheel_max_examples,
            "gate": {
                "margin": s.gate_margin,
                "tolerance": s.gate_tolerance,
                # the metrics that decide, first to last (one at its ceiling passes to the next)
                **{kind: list(self.policy.order(kind)) for kind in GATED},
            },
            "retriever": {"epochs": s.retriever_epochs, "batch_size": s.retriever_batch_size},
            "reranker": {
                "epochs": s.reranker_epochs,
                "mined_negatives": s.reranker_mined_negatives,
                "cosine_weight": s.reranker_cosine_weight,
            },
            "generator": {
                "backend": factory.llm_backend(s) or s.generator,
                "epochs": s.generator_epochs,
                "max_pairs": s.generator_max_pairs,
                "eval_tickets": s.generator_eval_tickets,
            },
        }

    # --- the steps ------------------------------------------------------------------------

    def _cycle(self, report: CycleReport, cutoff: datetime) -> None:
        self.progress("reading and judging the clicks")
        prepared, watch = self._judged(report, cutoff)
        with self.db.connection() as conn:
            store.save_verdicts(conn, report.run_id, prepared.verdicts)
            store.save_reliability(conn, report.run_id, prepared.agents.values())
        data, left = prepared.data.capped(self.settings.flywheel_max_examples)
        report.counts = {
            "events": len(prepared.events),
            "judge": filtered_shares(prepared.events, prepared.kept_ids),
            "judge_rules": watch.as_counts(),
            "gate_evidence": prepared.evidence,
            "agents": {a.agent_id: a.weight for a in prepared.agents.values()},
            **data.counts(),
            "over_cap": left,
            "memory": self._memory_figures(cutoff),
        }
        if left:
            self.progress(
                "over the per-cycle cap of "
                f"{self.settings.flywheel_max_examples:,}, the oldest are left: "
                + ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in left.items())
            )
        self._check_enough(data, prepared.evidence)
        # deep enough for recall@75 (reported) and recall@AITL_RETRIEVE_K (gating)
        depth = max(100, self.settings.retrieve_k)
        live = self.versions.live_or_bootstrap()
        evaluator, read = live_evaluator(
            self.db,
            live,
            data.eval_queries,
            depth=depth,
            retrieve_k=self.settings.retrieve_k,
            context_k=self.settings.context_k,
        )
        if read:
            self.progress(f"read {read:,} chunk vectors from the live index")
        accepted: list[Accepted] = []
        retriever = self._retriever(report, data, evaluator, str(live[1].path), accepted)
        self._reranker(report, data, evaluator, retriever, accepted)
        self._memory_redundancy(report, prepared, evaluator, live)
        report.counts["encoders"] = self._encoder_figures(report, evaluator, live)
        self._generator(report, data, accepted)
        self._promote(report, accepted)

    def _memory_figures(self, cutoff: datetime) -> dict[str, int]:
        """The feedback memory's size and the drafts it moved since the last cycle (whether
        the retrained models made it redundant: ``_memory_redundancy``, once they are)."""
        from flywheel.memory import cycle_figures  # the memory builds its judge from here

        with self.db.connection() as conn:
            earlier = store.runs(conn, 1, before=cutoff)
            return cycle_figures(conn, earlier[0].cutoff if earlier else None, cutoff)

    def _memory_redundancy(self, report: CycleReport, prepared: Prepared, evaluator, live) -> None:
        """How many of the memory's moves on its latest tickets the live models, and the
        retriever and reranker this cycle trained, make on their own (``counts["memory"]
        ["redundant"]``). A failure here is logged and reported; it never fails the cycle."""
        from flywheel.memory import Ranking, redundancy

        memory = report.counts.get("memory") or {}
        if not self.settings.memory_enabled or not memory.get("entries"):
            return
        self.progress("measuring how many of the feedback memory's moves the models make alone")
        try:
            champion = self.registry.champion("reranker")
            before = Ranking(str(live[1].path), champion.path if champion else None)
            trained = {kind: report.artefacts[kind] for kind in GATED if kind in report.artefacts}
            after = None
            if trained:
                after = Ranking(
                    trained.get("retriever", before.retriever),
                    trained.get("reranker", before.reranker),
                )
            memory["redundant"] = redundancy(
                self.settings,
                self.db,
                events=prepared.events,
                sets=prepared.context.sets,
                live=live,
                evaluator=evaluator,
                before=before,
                after=after,
                promoted={kind: bool(report.decisions[kind]["promoted"]) for kind in trained},
            )
        except Exception as exc:
            log.exception("could not tell whether the retrained models made the memory redundant")
            memory["redundant"] = {"error": f"{type(exc).__name__}: {exc}"}

    def _promote(self, report: CycleReport, accepted: list[Accepted]) -> None:
        """Last, once everything trained and was evaluated: a failed run changes nothing live.

        The retriever goes first: building its index is the slow step that can still fail,
        and a failure there leaves the other kinds uncrowned too. Its index reuses the vectors
        the evaluation computed; how long it took goes to the run record.
        """
        for item in sorted(accepted, key=lambda a: a.kind != "retriever"):
            self.progress(f"promoting the {item.kind}: {item.reason}")
            started = time.perf_counter()
            row = self.registry.promote(item.kind, item.version, item.reason, known=item.known)
            if item.kind == "retriever" and row.embedding_version:
                figures = reembed_figures(self.db, row.embedding_version, item.known)
                figures["seconds"] = round(time.perf_counter() - started, 2)
                report.counts.setdefault("encoders", {})["reembed"] = figures

    def _prepare(self, evaluator, trained: str, kind: encoders.Kind, like: str, like_kind):
        """A trained model is exported for the encoder backend before it is evaluated, so that
        once promoted it serves on it without an export at request time; it is tried first on
        the backend of ``like``, the model it was trained from (or the live one it joins)."""
        if evaluator.backend.choice == "torch":
            return
        prefer = [evaluator.backend_of(like, like_kind)]
        name = "retriever" if kind == "embedder" else "reranker"
        self.progress(f"exporting the trained {name} for the encoder backend ({prefer[0]} first)")
        evaluator.prepare(trained, kind, prefer=prefer)

    def _encoder_figures(self, report: CycleReport, evaluator, live) -> dict[str, Any]:
        """The run record's ``counts["encoders"]``: the backend each model was prepared for,
        and what each encoded or scored, on which backend, in how many seconds."""
        labels = {str(Path(live[1].path).resolve()): "live retriever"}
        champion = self.registry.champion("reranker")
        if champion is not None:
            labels[str(Path(champion.path).resolve())] = f"live reranker {champion.version}"
        for kind in GATED:
            if kind in report.artefacts:
                version = report.decisions[kind]["version"]
                labels[str(Path(report.artefacts[kind]).resolve())] = f"trained {kind} {version}"
        return {
            "setting": self.settings.encoder_backend,
            "models": [
                {
                    "model": labels.get(key, key),
                    "kind": kind,
                    "prepared": choice.backend,
                    "summary": choice.summary(),
                }
                for (kind, key), choice in evaluator.choices.items()
            ],
            "work": evaluator.log.as_records(labels),
        }

    def _judged(self, report: CycleReport, cutoff: datetime) -> tuple[Prepared, JudgeWatch]:
        """The clicks judged, and each rule's share against its history; a rule dropping an
        unusual share is reported to the admins and, with AITL_JUDGE_UNUSUAL_RULE=skip, the
        clicks are judged again without it (the watch keeps what the rule would have done)."""
        s = self.settings
        prepared = prepare(s, self.db, self.judge, cutoff)
        ran = self.judge.ran(prepared.events, prepared.context)
        watch = judge_watch.measure(prepared.events, prepared.verdicts, ran)
        with self.db.connection() as conn:
            earlier = store.earlier_counts(conn, report.run_id, judge_watch.WATCHED_RUNS)
        history = [w for w in map(JudgeWatch.from_counts, earlier) if w is not None]
        watch.unusual = judge_watch.find_unusual(
            watch, history, ceiling=s.judge_rule_ceiling, surge=s.judge_rule_surge
        )
        if not watch.unusual:
            return prepared, watch
        if s.judge_unusual_rule == "skip":
            watch.skipped = sorted({u.rule for u in watch.unusual})
            self.progress(f"judging again without {', '.join(watch.skipped)}")
            prepared = prepare(s, self.db, self.judge.without(watch.skipped), cutoff)
        report.warnings.append(judge_watch.warning(watch.unusual, watch.skipped))
        return prepared, watch

    def _check_enough(self, data: Datasets, evidence: dict[str, int] | None = None) -> None:
        s = self.settings
        if len(data.eval_queries) < s.flywheel_min_eval_queries:
            judged = ""
            if evidence and evidence["tickets_before"] >= s.flywheel_min_eval_queries:
                judged = (
                    f" (the judge left them of {evidence['tickets_before']} before judging:"
                    " see `aitl flywheel judge`)"
                )
            raise NotEnoughData(
                f"{len(data.eval_queries)} held-out tickets with a relevant article{judged};"
                f" a fair comparison needs {s.flywheel_min_eval_queries}"
            )
        if max(len(data.retriever), len(data.reranker), len(data.generator)) < (
            s.flywheel_min_examples
        ):
            raise NotEnoughData(
                f"{len(data.retriever)} retriever pairs, {len(data.reranker)} reranker examples,"
                f" {len(data.generator)} preference pairs; training needs {s.flywheel_min_examples}"
            )

    def _out_dir(self, kind: str, report: CycleReport) -> tuple[str, Path]:
        version = f"r{report.run_id}-{datetime.now(UTC):%Y%m%d%H%M%S}"
        return version, self.settings.models_dir / kind / version

    def _retriever(
        self, report: CycleReport, data: Datasets, evaluator, base: str, accepted
    ) -> str:
        """Train and judge a retriever from ``base``, the live model whose vectors the
        evaluator read (one lookup, so a promotion mid-cycle cannot pair one version's vectors
        with another's model); returns the one that will be live after this run."""
        from flywheel.train_retrieval import RetrieverTraining, train_retriever

        if len(data.retriever) < self.settings.flywheel_min_examples:
            report.decisions["retriever"] = _skipped(len(data.retriever), "retriever pairs")
            return base
        version, out = self._out_dir("retriever", report)
        self.progress(f"training the retriever on {len(data.retriever)} pairs")
        config = RetrieverTraining(
            epochs=self.settings.retriever_epochs,
            batch_size=self.settings.retriever_batch_size,
            max_seq_length=self.settings.flywheel_max_seq_length,
            seed=self.settings.flywheel_seed,
        )
        trained = train_retriever(base, data.retriever, out, config)
        self._prepare(evaluator, trained.path, "embedder", base, "embedder")
        self.progress("evaluating the retriever: champion vs challenger")
        before, after = evaluator.evaluate(base), evaluator.evaluate(trained.path)
        decision = decide(before, after, self.policy, kind="retriever")
        known = evaluator.known_vectors(trained.path)
        self._settle(
            report, "retriever", version, trained, before, after, decision, accepted, known
        )
        return trained.path if decision.promote else base

    def _reranker(self, report: CycleReport, data: Datasets, evaluator, retriever, accepted):
        from flywheel.train_retrieval import RerankerTraining, train_reranker

        if len(data.reranker) < self.settings.flywheel_min_examples:
            report.decisions["reranker"] = _skipped(len(data.reranker), "reranker examples")
            return
        champion = self.registry.champion("reranker")
        version, out = self._out_dir("reranker", report)
        s = self.settings
        mined = mine(s, evaluator, retriever, data.reranker, limit=s.flywheel_max_examples)
        report.counts["reranker_mined_negatives"] = len(mined)
        self.progress(
            f"training the reranker on {len(data.reranker)} examples and {len(mined):,} "
            f"negatives mined from the retriever's top {s.retrieve_k}"
        )
        base = champion.path if champion else retriever_base(s)
        config = RerankerTraining(
            epochs=s.reranker_epochs,
            max_seq_length=s.flywheel_max_seq_length,
            seed=s.flywheel_seed,
        )
        trained = train_reranker(base, [*data.reranker, *mined], out, config)
        like = (champion.path, "cross-encoder") if champion else (retriever, "embedder")
        self._prepare(evaluator, trained.path, "cross-encoder", *like)
        self.progress("evaluating the reranker: champion vs challenger")
        ranking = {"rerank_k": s.retrieve_k, "cosine_weight": s.reranker_cosine_weight}
        before = evaluator.evaluate(
            retriever, reranker_path=champion.path if champion else None, **ranking
        )
        after = evaluator.evaluate(retriever, reranker_path=trained.path, **ranking)
        decision = decide(before, after, self.policy, kind="reranker")
        self._settle(report, "reranker", version, trained, before, after, decision, accepted)

    def _generator(self, report: CycleReport, data: Datasets, accepted) -> None:
        """ORPO + LoRA on the drafting LLM from the newest preference pairs (capped), going on
        from the adapter drafts are served with; then checked on held-out tickets against the
        replies agents wrote, by the LLM judge where one is configured, else online in A/B."""
        from flywheel.train_generator import GeneratorTraining, train_generator

        s = self.settings
        base, reason = self._llm_base()
        if base is None:
            report.decisions["generator"] = {"promoted": False, "reason": f"skipped: {reason}"}
            return
        pairs = data.generator[-s.generator_max_pairs :]
        report.counts["generator_pairs_used"] = len(pairs)
        if len(pairs) < s.flywheel_min_examples:
            report.decisions["generator"] = _skipped(len(pairs), "preference pairs")
            return
        champion = self.registry.champion("generator")
        live = self._live_adapter()
        self._keep_untrained_in_test()
        version, out = self._out_dir("generator", report)
        capped = len(data.generator) - len(pairs)
        self.progress(
            f"training the generator (ORPO + LoRA on {base.name}) on {len(pairs)} pairs"
            + (
                f", the newest of {len(data.generator)} (AITL_GENERATOR_MAX_PAIRS)"
                if capped
                else ""
            )
        )
        trained = train_generator(
            base,
            pairs,
            out,
            GeneratorTraining(epochs=s.generator_epochs, seed=s.flywheel_seed),
            adapter=live,
        )
        report.artefacts["generator"] = trained.path
        report.metrics["generator"] = {
            "training": {
                "pairs": len(pairs),
                "left_by_cap": capped,
                "steps": trained.steps,
                "seconds": round(trained.seconds, 1),
                "pairs_per_s": round(trained.examples / trained.seconds, 3)
                if trained.seconds
                else None,
                "from_adapter": live.name if live else None,
            }
        }
        outcome, decision, metrics = self._check_generator(data, live, Path(trained.path))
        report.metrics["generator"].update(metrics)
        if outcome == "promote" and champion is None:
            # better than the LLM it was trained from, but the champion is the extractive
            # drafter: only the A/B clicks can say whether it beats that
            outcome = "online"
            decision = Decision(False, f"{decision.reason}; it replaces the LLM challenger")
        with self.db.connection() as conn:
            store.add_model(
                conn,
                kind="generator",
                version=version,
                path=trained.path,
                status="rejected" if outcome == "reject" else "challenger",
                run_id=report.run_id,
                metrics=metrics.get("challenger"),
                baseline=metrics.get("champion"),
                decision=decision.reason,
            )
        if outcome == "promote":
            accepted.append(Accepted("generator", version, decision.reason))
        elif outcome == "online":
            decision = Decision(
                False,
                f"{decision.reason}; served as one of drafts A/B so agents' clicks measure it",
            )
        report.decisions["generator"] = {
            "promoted": decision.promote,
            "reason": decision.reason,
            "version": version,
        }

    def _llm_base(self) -> tuple[Path | None, str]:
        """The base weights adapters are trained on, or why the generator is not trained."""
        from flywheel.train_generator import trainable

        s = self.settings
        backend = factory.llm_backend(s)
        if backend is None:
            return None, (
                "the extractive drafter has no weights to train and no LLM drafts beside it"
                " (AITL_LLM_CHALLENGER=false)"
            )
        if backend == "openai" and s.hf_model_path is None:
            return None, (
                "the openai generator's base weights are not on this machine: set"
                " AITL_HF_MODEL_PATH to the served model's weights to train adapters for it"
            )
        try:
            base = factory.llm_model_path(s)
        except rag_exceptions.RagError as exc:
            return None, str(exc)
        reason = trainable(base)
        return (None, reason) if reason else (base, "")

    def _live_adapter(self) -> Path | None:
        """The adapter training goes on from: the champion's, else the newest challenger's
        (while the extractive drafter is champion; the newest may still wait for its turn in
        the A/B test), else AITL_HF_ADAPTER_PATH."""
        from flywheel.serving import adapter_of, challengers

        rows = self.registry.list()
        champion = next((r for r in rows if r.kind == "generator" and r.status == "champion"), None)
        waiting = challengers(rows)
        row = champion or (waiting[-1] if waiting else None)
        return adapter_of(row) if row else self.settings.hf_adapter_path

    def _keep_untrained_in_test(self) -> None:
        """While the untrained LLM is the challenger, it gets a registry row before the new
        adapter does, so its A/B test runs on to a decision and the adapter waits its turn."""
        from flywheel.online import register_untrained_llm
        from flywheel.serving import served

        if served(self.settings, self.registry.list()).llm_challenger:
            reason = "the untrained LLM, in the online A/B test"
            register_untrained_llm(self.settings, self.db, "challenger", reason)

    def _check_generator(
        self, data: Datasets, live: Path | None, trained: Path
    ) -> tuple[str, Decision, dict[str, Any]]:
        """Trained adapter against the live LLM on held-out tickets: reference metrics where
        agents wrote the reply, else the LLM judge where configured, else online."""
        s = self.settings
        references = data.eval_references[-s.generator_eval_tickets :]
        try:
            if len(references) >= s.flywheel_min_eval_queries:
                return self._against_references(references, live, trained)
            record = self._judge_generator(data, live, trained)
        except rag_exceptions.GenerationError as exc:  # e.g. vLLM refused the adapter
            log.error("the generator check could not draft: %s", exc)
            return "online", Decision(False, f"not evaluated offline: {exc}"), {}
        if record is None:
            reason = (
                f"not evaluated offline ({len(references)} held-out tickets with a reply an"
                f" agent wrote, {s.flywheel_min_eval_queries} needed; no LLM judge configured)"
            )
            return "online", Decision(False, reason), {"win_rate": "not evaluated"}
        outcome = decide_generator(
            record,
            margin=s.gate_margin,
            tolerance=s.gate_tolerance,
            min_judged=s.flywheel_min_eval_queries,
        )
        return outcome, describe(record, outcome), {"challenger": record.as_metrics()}

    def _against_references(self, references, live: Path | None, trained: Path):
        from flywheel.reply_metrics import score

        s = self.settings
        self.progress(
            f"evaluating the generator: {len(references)} held-out tickets against the replies"
            " agents wrote"
        )
        requests = [dataclasses.replace(r, variant=steady(r.variant)) for r, _ in references]
        texts = [text for _, text in references]
        passages = [[p.text for p in r.passages] for r in requests]
        prompts = PromptLibrary(s.prompts_dir)
        boilerplate = [prompts.text("closing.txt")]
        encode = factory.embedder(s).encode
        scores = {}
        for side, adapter in (("champion", live), ("challenger", trained)):
            drafter = factory.llm_drafter(s, adapter, label=adapter.name if adapter else None)
            replies = [drafter.invoke(r).text for r in requests]
            scores[side] = score(replies, texts, passages, encode, boilerplate).as_metrics()
        before = EvalResult(_numbers(scores["champion"]), "semantic", True, len(requests))
        after = EvalResult(_numbers(scores["challenger"]), "semantic", True, len(requests))
        decision = decide(before, after, self.policy)
        if decision.promote:
            outcome = "promote"
        elif after.metrics["semantic"] < before.metrics["semantic"] - s.gate_tolerance:
            outcome = "reject"
            decision = Decision(False, f"{decision.reason}: rejected")
        else:
            outcome = "online"
        return outcome, decision, scores

    def _judge_generator(self, data: Datasets, champion: Path | None, challenger: Path):
        """The challenger's win rate on held-out tickets, when an LLM judge is configured with
        an endpoint: the pairwise comparison needs AITL_OPENAI_BASE_URL. The local LLM judges
        clicks only: it is the very model under test (and the shipped one, 135M, cannot tell
        replies apart), so without an endpoint the generator is compared online."""
        s = self.settings
        if s.judge != "llm" or not s.openai_base_url or not data.eval_requests:
            return None
        from flywheel.generator_eval import win_rate
        from flywheel.llm import chat_function

        def drafter(adapter: Path | None):
            return factory.llm_drafter(s, adapter, label=adapter.name if adapter else None)

        prompts = PromptLibrary(s.prompts_dir)
        requests = data.eval_requests[-s.generator_eval_tickets :]
        self.progress(f"evaluating the generator: {len(requests)} held-out tickets, LLM judge")
        return win_rate(
            requests, drafter(champion), drafter(challenger), chat_function(s), prompts.text
        )

    def _settle(
        self, report, kind, version, trained, before, after, decision, accepted, known=None
    ) -> None:
        """Record the challenger and the decision; what the gate accepts is promoted last."""
        report.metrics[kind] = {"champion": before.metrics, "challenger": after.metrics}
        report.artefacts[kind] = trained.path
        with self.db.connection() as conn:
            store.add_model(
                conn,
                kind=kind,
                version=version,
                path=trained.path,
                status="rejected" if not decision.promote else "challenger",
                run_id=report.run_id,
                embedding_version=f"{kind}_{version}".replace("-", "_")
                if kind == "retriever"
                else None,
                metrics=after.metrics,
                baseline=before.metrics,
                decision=decision.reason,
            )
        if decision.promote:
            accepted.append(Accepted(kind, version, decision.reason, known))
        report.decisions[kind] = {
            "promoted": decision.promote,
            "reason": decision.reason,
            "version": version,
            "metric": decision.metric or None,  # None: every gate metric was at its ceiling
            "at_ceiling": list(decision.ceiling),
        }


def index_name(version: str) -> str:
    """The knowledge-base index a trained retriever gets (a valid embedding version name)."""
    return f"retriever_{version}".replace("-", "_")


@dataclass
class Prepared:
    """The judged window: what training and export both start from."""

    events: list
    context: JudgeContext
    verdicts: list
    agents: dict
    kept_ids: set[int]
    data: Datasets
    # the held-out tickets and relevant marks the gate decides on, before and after judging
    evidence: dict[str, int] = field(default_factory=dict)


def prepare(settings: Settings, db: Database, judge: Judge, cutoff: datetime) -> Prepared:
    with db.connection() as conn:
        events = store.standing_events(conn, cutoff)
    if not events:
        raise NotEnoughData("no feedback events before the cut-off: nothing to learn from")
    context = load_context(db, events)
    verdicts = judge.judge(events, context)
    agents = reliability.estimate(events, verdicts)
    kept_ids = {v.event_id for v in verdicts if v.keep}
    kept = [e for e in events if e.id in kept_ids]
    # without a judge every click counts the same: reliability is still reported, not applied
    weights = {a.agent_id: a.weight for a in agents.values()} if judge.weighs_agents else {}
    prompts = PromptLibrary(settings.prompts_dir)
    data = datasets.build(kept, context, weights, prompts, holdout=settings.flywheel_holdout)
    # the same held-out tickets, with every click: what judging took from the gate's evidence
    _, held = datasets.split_by_time(kept, settings.flywheel_holdout)
    unjudged = datasets.held_out_queries(events, context, held)
    evidence = {
        "tickets_before": len(unjudged),
        "marks_before": sum(len(q.relevant) for q in unjudged),
        "tickets_after": len(data.eval_queries),
        "marks_after": sum(len(q.relevant) for q in data.eval_queries),
        "needed": settings.flywheel_min_eval_queries,
    }
    return Prepared(events, context, verdicts, agents, kept_ids, data, evidence)


def load_context(db: Database, events) -> JudgeContext:
    set_ids = sorted({e.draft_set_id for e in events})
    with db.connection() as conn:
        sets = rag_store.draft_set_infos(conn, set_ids)
        chunk_ids = {c for e in events for c in e.chunk_ids}
        chunk_ids |= {c for info in sets.values() for c in info.context}
        chunks = rag_store.chunk_refs(conn, sorted(chunk_ids))
    return JudgeContext(sets, chunks)


def live_evaluator(
    db: Database,
    live: tuple[rag_store.EmbeddingVersion, Embedder],
    queries: Sequence[EvalQuery],
    *,
    depth: int,
    retrieve_k: int = RETRIEVE_K,
    context_k: int = CONTEXT_K,
    backend: encoders.BackendSettings | None = None,
) -> tuple[RetrieverEvaluator, int]:
    """Exact search ``depth`` deep over every live chunk, with the chunk vectors of ``live``
    (the version and model ``EmbeddingVersions.live_or_bootstrap`` gave the caller, so both use
    the same one) read from its index rather than encoded again; returns it and how many
    vectors were read. Its metrics are at the drafts' depths, ``retrieve_k`` and ``context_k``.
    Its models run on ``backend``, by default the live embedder's (``AITL_ENCODER_BACKEND``).
    """
    version, embedder = live
    evaluator = RetrieverEvaluator(
        corpus(db),
        queries,
        k=depth,
        retrieve_k=retrieve_k,
        context_k=context_k,
        backend=backend or embedder.backend_settings,
        log=EncodingLog(),
    )
    with db.connection() as conn:
        stored = rag_store.stored_embeddings(conn, version.version, evaluator.chunk_ids)
    return evaluator, len(stored) if evaluator.seed(embedder.path, stored) else 0


def mine(
    settings: Settings,
    evaluator: RetrieverEvaluator,
    retriever: str | Path,
    examples: Sequence[RerankExample],
    *,
    limit: int | None = None,
) -> list[RerankExample]:
    """The reranker's mined negatives from ``retriever``'s top ``AITL_RETRIEVE_K``: the same
    recipe for a cycle and for an export."""
    return mined_negatives(
        examples,
        lambda texts, k: evaluator.search(retriever, texts, k),
        evaluator.texts,
        per_ticket=settings.reranker_mined_negatives,
        depth=settings.retrieve_k,
        limit=limit,
    )


def reembed_figures(db: Database, name: str, known: KnownVectors | None) -> dict[str, Any]:
    """A promoted retriever's new index: its vectors, how many the evaluation had computed
    (reused where the chunk's text is unchanged) and the backends that wrote the rest."""
    with db.connection() as conn:
        version = rag_store.get_version(conn, name)
        vectors = rag_store.count_embeddings(conn, name)
    return {
        "version": name,
        "vectors": vectors,
        "from_evaluation": len(known or {}),
        "backends": list(version.backends) if version else [],
    }


def corpus(db: Database) -> list[tuple[int, str]]:
    """Every live chunk as the retriever embeds it: what offline evaluation searches."""
    with db.connection() as conn:
        rows = rag_store.live_chunk_texts(conn)
    return [(chunk_id, embedding_text(title, text)) for chunk_id, title, text in rows]


def steady(variant):
    """The variant at temperature 0: offline checks compare models, not sampling luck."""
    return dataclasses.replace(variant, temperature=0.0)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "replies" and v is not None}


def _skipped(count: int, what: str) -> dict[str, Any]:
    return {"promoted": False, "reason": f"skipped: {count} {what} (too few to train)"}


def retriever_base(settings: Settings) -> str:
    """A new reranker starts from the shipped MiniLM (a cross-encoder head is added)."""
    return settings.embedding_model


def filtered_shares(events, kept_ids: set[int]) -> dict[str, dict[str, float]]:
    """Share of events the judge filtered per dataset, as the paper reports it."""
    groups = {
        "retriever": ("relevance", "missing_knowledge"),
        "generator": ("preference", "adoption"),
    }
    shares = {}
    for name, kinds in groups.items():
        mine = [e for e in events if e.kind in kinds]
        filtered = sum(e.id not in kept_ids for e in mine)
        shares[name] = {
            "events": len(mine),
            "filtered": filtered,
            "share": round(filtered / len(mine), 4) if mine else 0.0,
        }
    return shares


def rule_settings(settings: Settings) -> RuleSettings:
    """The rule judge as configured; an unknown rule name is a configuration error."""
    disabled = frozenset(settings.judge_disabled_rules)
    unknown = sorted(disabled - RULES.keys())
    if unknown:
        raise FlywheelError(
            f"AITL_JUDGE_DISABLED_RULES names no such rule: {', '.join(unknown)}"
            f" (the rules: {', '.join(RULES)})"
        )
    return RuleSettings(
        min_read_s=settings.judge_min_read_s,
        semantic_quantile=settings.judge_semantic_quantile,
        semantic_min_agreed=settings.judge_semantic_min_agreed,
        disabled=disabled,
    )


def default_judge(settings: Settings) -> Judge:
    if settings.judge == "off":
        return NoJudge()
    rules = RuleJudge(rule_settings(settings))
    if settings.judge != "llm":
        return rules
    from flywheel.llm import judge_chat

    # the endpoint at AITL_OPENAI_BASE_URL when set, else the local LLM ("local:<folder>")
    chat, model = judge_chat(settings)
    prompts = PromptLibrary(settings.prompts_dir)
    return LLMJudge(chat, prompts.text, model, rules)
