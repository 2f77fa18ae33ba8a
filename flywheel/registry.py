"""The model registry and the gate: which retriever, reranker and generator are live.

No row for a kind means its shipped model is live (MiniLM, the cosine order, the configured
generator). A challenger is promoted only when the gate says so; promoting a retriever first
embeds the knowledge base with it beside the live index (blue/green) and then switches the
index and the registry in one transaction, keeping the old index for a rollback. One change
at a time, whoever asks: ``aitl models``, App Home (through the worker) or a cycle.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile

import psycopg

from aitl.core.db import Database
from aitl.core.leader import held
from aitl.core.settings import Settings
from flywheel import store
from flywheel.evaluation import CONTEXT_K, MRR, RETRIEVE_K, EvalResult, reported_only
from flywheel.exceptions import RegistryError, StaleModelChange
from rag import store as rag_store
from rag.versions import EmbeddingVersions, KnownVectors

log = logging.getLogger(__name__)
KINDS = ("retriever", "reranker", "generator")
CHANGE_LOCK = "aitl.registry.change"
# writes a change to the registry inside the transaction that makes it live
Record = Callable[[psycopg.Connection], None]


CEILING = 1 - 1e-9  # a metric at 1.0 for both sides cannot show a gain


@dataclass(frozen=True)
class GatePolicy:
    """How much a challenger must gain, how much it may lose elsewhere, and at which depths
    (AITL_RETRIEVE_K, AITL_CONTEXT_K) the gate reads the metrics: those drafts use."""

    margin: float = 0.005  # the deciding metric must rise by at least this much (absolute)
    tolerance: float = 0.02  # no other pipeline metric may fall by more than this
    retrieve_k: int = RETRIEVE_K
    context_k: int = CONTEXT_K

    @classmethod
    def from_settings(cls, settings: Settings) -> GatePolicy:
        return cls(
            settings.gate_margin, settings.gate_tolerance, settings.retrieve_k, settings.context_k
        )

    def order(self, kind: str) -> tuple[str, ...]:
        """The metrics that decide a ``kind``'s promotion, first to last: a retriever is judged
        on what it hands the reranker, a reranker on what it keeps for the draft (reranking
        cannot move recall@retrieve_k)."""
        head = {"retriever": f"recall@{self.retrieve_k}", "reranker": f"precision@{self.context_k}"}
        if kind not in head:
            raise ValueError(f"no metric order for {kind!r}; one of {', '.join(head)}")
        return tuple(dict.fromkeys((head[kind], f"ndcg@{self.context_k}", MRR)))

    def blocks(self, name: str) -> bool:
        """Whether a fall in ``name`` past tolerance refuses a challenger: every metric but the
        paper's at depths drafts do not use (reported, not gating)."""
        return name not in reported_only(self.retrieve_k, self.context_k)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str = ""  # the metric that decided; empty when none could
    ceiling: tuple[str, ...] = ()  # metrics skipped: at their ceiling for both sides


def decide(
    champion: EvalResult,
    challenger: EvalResult,
    policy: GatePolicy,
    *,
    kind: str | None = None,
    order: Sequence[str] | None = None,
) -> Decision:
    """Promote on a clear gain in the first metric that can still move, with no other metric
    worse past tolerance.

    The metrics come in ``order``, else ``policy.order(kind)``, else the challenger's primary
    alone. One at its ceiling for both sides (1.0, greater is better) cannot show a gain, so
    it is skipped, said so, and the next decides; when all are, the champion stays. The
    tolerance guards every metric but the deciding one, except the paper's recall@75,
    precision@8 and ndcg@10 where drafts use other depths: those are reported, not blocking.
    """
    names = tuple(order or (policy.order(kind) if kind else (challenger.primary,)))
    sign = 1 if challenger.greater_is_better else -1
    ceiling = tuple(takewhile(lambda n: sign > 0 and _at_ceiling(champion, challenger, n), names))
    if len(ceiling) == len(names):
        return Decision(False, _all_at_ceiling(ceiling), "", ceiling)
    metric = names[len(ceiling)]
    said = f"{_skipped(ceiling, metric)}; " if ceiling else ""
    before, after = champion.metrics[metric], challenger.metrics[metric]
    moved = f"{metric} {before:.4f} → {after:.4f}"
    if sign * (after - before) < policy.margin:
        reason = f"{said}{moved} (needs +{policy.margin:.4f})"
        return Decision(False, reason, metric, ceiling)
    fell = _fell(champion, challenger, policy, metric, sign)
    if fell:
        return Decision(False, f"{said}{moved}, but {fell}", metric, ceiling)
    reason = f"{said}{moved}, nothing else worse past tolerance"
    return Decision(True, reason, metric, ceiling)


def _at_ceiling(champion: EvalResult, challenger: EvalResult, name: str) -> bool:
    return min(champion.metrics[name], challenger.metrics[name]) >= CEILING


def _fell(
    champion: EvalResult, challenger: EvalResult, policy: GatePolicy, metric: str, sign: int
) -> str:
    """The first guarded metric that fell past tolerance, in words; empty when none did."""
    for name, before in champion.metrics.items():
        after = challenger.metrics.get(name, before)
        if name != metric and policy.blocks(name) and sign * (after - before) < -policy.tolerance:
            return f"{name} fell {before:.4f} → {after:.4f}"
    return ""


def _skipped(skipped: Sequence[str], metric: str) -> str:
    verb = "is at its ceiling" if len(skipped) == 1 else "are at their ceiling"
    return f"{_names(skipped)} {verb} (1.0000) for both: deciding on {metric}"


def _all_at_ceiling(ceiling: Sequence[str]) -> str:
    every = "is at its ceiling" if len(ceiling) == 1 else "are all at their ceiling"
    return (
        f"{_names(ceiling)} {every} (1.0000) for both: no metric can show a gain,"
        " so the champion stays"
    )


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class Registry:
    def __init__(
        self,
        db: Database,
        versions: EmbeddingVersions,
        *,
        waiting: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.versions = versions
        # told what waits when a change must wait for another (the CLI says so on screen)
        self.waiting = waiting

    def list(self) -> list[store.ModelRow]:
        with self.db.connection() as conn:
            return store.models(conn)

    def rollback_targets(self) -> dict[str, str | None]:
        """Per kind, the model a rollback would make live (no entry: the shipped one)."""
        with self.db.connection() as conn:
            return store.rollback_targets(conn, KINDS)

    def history(self, kind: str | None = None, *, limit: int = 20) -> list[store.ModelChange]:
        """Promotions and rollbacks, newest first."""
        if kind is not None and kind not in KINDS:
            raise RegistryError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")
        with self.db.connection() as conn:
            return store.model_changes(conn, kind=kind, limit=limit)

    def champion(self, kind: str) -> store.ModelRow | None:
        with self.db.connection() as conn:
            return store.champion(conn, kind)

    def promote(
        self, kind: str, version: str, reason: str, *, known: KnownVectors | None = None
    ) -> store.ModelRow:
        """Make a registered model live; a retriever's index is built first if it is missing
        (from ``known`` vectors of the same model where they are still current), and goes live
        in the transaction that records the promotion."""
        with self._one_change_at_a_time(f"promoting {kind} {version}"):
            row = self._get(kind, version)
            if row.status == "champion":
                return row
            record = functools.partial(store.crown, kind=kind, version=version, decision=reason)
            if kind == "retriever":
                self._go_live_index(row, known, then=record)
            else:
                with self.db.connection() as conn:
                    record(conn)
        log.info("promoted %s %s: %s", kind, version, reason)
        return self._get(kind, version)

    def rollback(
        self, kind: str, reason: str = "rolled back by an admin", *, live: str | None = None
    ) -> store.ModelRow | None:
        """Undo the latest promotion still standing: the champion it replaced goes live again,
        or the shipped model if it replaced none. Rolling back again goes further back; a model
        once rolled back does not return unless promoted again.

        ``live`` is the champion the admin saw: a second click on the same Roll back button,
        or a promotion that finished while this rollback waited, must not be undone by it.
        """
        with self._one_change_at_a_time(f"rolling back {kind}"):
            with self.db.connection() as conn:
                current = store.champion(conn, kind)
                last = store.undoable_promotion(conn, kind)
            if live is not None and (current is None or current.version != live):
                now = current.version if current else "the shipped model"
                raise StaleModelChange(
                    f"{kind} {live} is no longer live ({now} is): nothing rolled back"
                )
            if current is None:
                raise RegistryError(f"no trained {kind} is live: nothing to roll back")
            previous = self._get(kind, last.replaced) if last and last.replaced else None
            record = functools.partial(store.undo, kind=kind, promotion=last, decision=reason)
            if kind == "retriever":
                self._switch_index(previous.embedding_version if previous else None, then=record)
            else:
                with self.db.connection() as conn:
                    record(conn)
        back = previous.version if previous else "the shipped model"
        log.info("rolled back %s to %s: %s", kind, back, reason)
        return previous

    def retire(self, kind: str, version: str, reason: str) -> None:
        """A challenger stops being served (the online test found it worse, or no better);
        older challengers of its kind retire with it."""
        with self._one_change_at_a_time(f"retiring {kind} {version}"):
            row = self._get(kind, version)
            if row.status == "champion":
                raise RegistryError(f"{kind} {version} is the champion: roll it back instead")
            with self.db.connection() as conn:
                store.retire_challengers(conn, kind, version, reason)
        log.info("retired %s %s: %s", kind, version, reason)

    @contextmanager
    def _one_change_at_a_time(self, what: str) -> Iterator[None]:
        """Promotions and rollbacks from the worker, a cycle and the CLI never interleave: each
        reads the registry only once it holds the lock, and waits for the change before it."""

        def waiting() -> None:
            log.info("%s waits for another model change to finish", what)
            if self.waiting is not None:
                self.waiting(what)

        with held(self.db.url, CHANGE_LOCK, waiting=waiting):
            yield

    def _get(self, kind: str, version: str) -> store.ModelRow:
        if kind not in KINDS:
            raise RegistryError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")
        with self.db.connection() as conn:
            row = store.model(conn, kind, version)
        if row is None:
            raise RegistryError(f"no {kind} {version!r} in the registry")
        return row

    def _go_live_index(self, row: store.ModelRow, known: KnownVectors | None, then: Record) -> None:
        name = row.embedding_version or row.version
        with self.db.connection() as conn:
            exists = rag_store.get_version(conn, name) is not None
        if not exists:
            self.versions.build(name, row.path, known=known)
        self.versions.switch(name, then=then)

    def _switch_index(self, name: str | None, then: Record) -> None:
        if name is None:  # the index built with the model from settings
            with self.db.connection() as conn:
                shipped = [v for v in rag_store.list_versions(conn) if v.origin == "settings"]
            name = shipped[0].version if shipped else None
        if name is None:
            raise RegistryError("the shipped model's index is gone; re-ingest the knowledge base")
        self.versions.switch(name, then=then)
