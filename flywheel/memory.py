"""The feedback memory: judged clicks that count on the next similar ticket, before any retrain.

A refresh (``MemoryBuilder.refresh``, queued every few minutes and after a retriever changes)
keeps one entry per relevance mark and per missing-knowledge pick that names a passage, as it
stands now: a later click by the same agent in the same slot replaces the earlier one, as in
the datasets. Only clicks the judge keeps are remembered. Each entry holds the embedding of its
draft set's (redacted) query under the live embedding version; a promotion or rollback that
changes the live version rebuilds the memory under the new one, and until then a lookup under
the new version finds nothing. A passage whose document was deleted, changed (its chunks are
retired) or turned agent-only leaves the memory at the next refresh.

For a new ticket, ``FlywheelMemory.votes`` reads the nearest annotated tickets (k, and a cosine
floor): each of their entries votes for its passage with similarity × the agent's reliability
(the latest cycle's) × an age decay (a half-life), positive for "relevant" and "missing",
negative for "not relevant". A passage's vote counts only when enough distinct agents cast it,
or enough total weight (each agent counted once, at their strongest vote): one agent alone
cannot move a source for everyone.

Judging on arrival: the rule judge runs over every click standing in the memory's horizon, so
each refresh judges afresh. The rules that read one click alone (too_fast, no_shared_words,
already_shown) decide at once. The ones that need more of the batch decide as it arrives: the
contradictions (unused_for_lack, not_relevant_yet_sent) drop a mark once the same agent's
adoption on that card contradicts it, at the next refresh; off_topic abstains until the window
holds enough agreed marks to calibrate on, as in the cycle. The LLM judge is not asked (a
model call per click every few minutes is too dear): its rules run alone.

The same refresh keeps the replies agents used on their cards, for a near-identical new
ticket to be offered as a draft of its own kind (``flywheel.memory_replies``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aitl.core.db import Database
from aitl.core.settings import Settings
from flywheel import memory_replies, store
from flywheel.cycle import default_judge, load_context
from flywheel.evaluation import EvalQuery, RetrieverEvaluator
from flywheel.events import StoredFeedback
from flywheel.judge import Judge, JudgeContext, LLMJudge
from rag import exceptions as rag_exceptions
from rag import factory
from rag import store as rag_store
from rag.embedding import Embedder
from rag.memory import MemoryVote, ReusedReply
from rag.store import DraftSetInfo, EmbeddingVersion
from rag.versions import EmbeddingVersions

log = logging.getLogger(__name__)
# older than this many half-lives a click weighs under 0.1 %: it is not kept
HORIZON_HALF_LIVES = 10
# entries read per nearest ticket wanted: a ticket holds a few marks, often several agents'
OVERFETCH = 8
SIGN = {"relevant": 1.0, "missing": 1.0, "not_relevant": -1.0}
# ticket refs → the ticket's brand, where the helpdesk knows it (wired in aitl/app/wiring.py:
# the flywheel does not read the connectors' tables)
BrandLookup = Callable[[Sequence[str]], dict[str, str]]
Clock = Callable[[], datetime]


def entry_kind(event: StoredFeedback) -> str | None:
    """What a click says of its passage, if it is one the memory keeps."""
    if not event.chunk_ids:
        return None
    if event.kind == "relevance":
        return event.value  # 'relevant' | 'not_relevant'
    if event.kind == "missing_knowledge":
        return "missing"
    return None


def memory_judge(settings: Settings) -> Judge:
    """The configured judge's rules (the LLM judge's, without the model)."""
    judge = default_judge(settings)
    return judge.rules if isinstance(judge, LLMJudge) else judge


@dataclass(frozen=True)
class RefreshReport:
    version: str | None  # None: no live embedding version yet, nothing remembered
    entries: int
    added: int
    removed: int
    dropped: int  # marks (and adoptions) standing in the horizon that the judge left out
    seconds: float
    replies: int = 0  # replies worth reusing held (flywheel.memory_replies)


class MemoryBuilder:
    """Brings the memory up to date with the feedback events."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        versions: EmbeddingVersions | None = None,
        judge: Judge | None = None,
        brands: BrandLookup | None = None,
        clock: Clock | None = None,
        placeholders: memory_replies.PlaceholderLookup | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.versions = versions or factory.embedding_versions(settings, db)
        self.judge = judge or memory_judge(settings)
        self.brands = brands
        # each ticket's placeholder values (wired in aitl/app/wiring.py): without them no new
        # reply is remembered, as none could be made fit for another customer
        self.placeholders = placeholders
        self.clock = clock or (lambda: datetime.now(UTC))

    def refresh(self) -> RefreshReport:
        """One pass, under a lock (the cron, the CLI and a promotion may ask at once)."""
        started = time.monotonic()
        live = self._live()
        with self.db.connection() as conn:
            conn.execute(store.MEMORY_LOCK)
            marks, adoptions, dropped, context = self._judged_marks(conn)
            held = store.memory_versions(conn)
            wanted = self._wanted(conn, live, marks, context.chunks)
            name = live[0].version if live else None
            stale = [eid for eid, v in held.items() if eid not in wanted or v != name]
            removed = store.forget(conn, stale) if stale else 0
            new = [e for eid, e in wanted.items() if held.get(eid) != name]
            if live is not None:
                store.remember(conn, self._entries(live, new, context.sets))
                store.index_memory(conn, live[0].version, live[1].dimension)
            replies = memory_replies.refresh(
                conn,
                live,
                adoptions,
                context.sets,
                values=self.placeholders,
                brands=self.brands,
            )
            entries = len(wanted)
            seconds = round(time.monotonic() - started, 3)
            store.record_memory_refresh(
                conn,
                version=name,
                entries=entries,
                added=len(new),
                removed=removed,
                dropped=dropped,
                seconds=seconds,
                replies=replies.entries,
            )
        if new or removed:
            log.info("memory: %d entries (+%d, -%d) under %s", entries, len(new), removed, name)
        if replies.added or replies.removed:
            log.info(
                "memory: %d replies (+%d, -%d) under %s",
                replies.entries,
                replies.added,
                replies.removed,
                name,
            )
        return RefreshReport(name, entries, len(new), removed, dropped, seconds, replies.entries)

    def _live(self):
        try:
            return self.versions.live()
        except rag_exceptions.NoLiveEmbeddingVersion:
            return None

    def _judged_marks(
        self, conn
    ) -> tuple[list[StoredFeedback], list[StoredFeedback], int, JudgeContext]:
        """The marks, and the adoptions that used a draft, standing in the horizon that the
        judge keeps, judged with every other answer standing there (an adoption can
        contradict a mark on its card, the reply sent an adoption click)."""
        horizon = timedelta(days=HORIZON_HALF_LIVES * self.settings.memory_half_life_days)
        now = datetime.now(UTC)
        events = store.standing_events(conn, now, clicked=(self.clock() - horizon, None))
        marks = [e for e in events if entry_kind(e) is not None]
        adoptions = memory_replies.used(events)
        if not marks and not adoptions:
            return [], [], 0, JudgeContext({}, {})
        context = load_context(self.db, events)
        kept = {v.event_id for v in self.judge.judge(events, context) if v.keep}
        chosen = [e for e in marks if e.id in kept]
        adopted = [e for e in adoptions if e.id in kept]
        dropped = len(marks) - len(chosen) + len(adoptions) - len(adopted)
        return chosen, adopted, dropped, context

    def _wanted(self, conn, live, marks, chunks) -> dict[int, StoredFeedback]:
        """The marks whose passage still stands for customers: embedded under the live version
        (a deleted or changed document's chunks lose their vectors) and not agent-only."""
        if live is None or not marks:
            return {}
        ids = sorted({e.chunk_ids[0] for e in marks})
        embedded = rag_store.stored_embeddings(conn, live[0].version, ids).keys()
        public = {c for c in embedded if c in chunks and chunks[c].audience == "public"}
        return {e.id: e for e in marks if e.chunk_ids[0] in public}

    def _entries(
        self,
        live: tuple[EmbeddingVersion, Embedder],
        new: Sequence[StoredFeedback],
        sets: dict[int, DraftSetInfo],
    ) -> list[store.MemoryEntry]:
        """The new entries, each draft set's query embedded once."""
        if not new:
            return []
        version, embedder = live
        set_ids = sorted({e.draft_set_id for e in new})
        queries = [sets[s].query if s in sets else "" for s in set_ids]
        vectors = dict(zip(set_ids, embedder.encode(queries), strict=True))
        refs = sorted({e.ticket_ref for e in new})
        brands = self.brands(refs) if self.brands is not None else {}
        return [
            store.MemoryEntry(
                event_id=e.id,
                kind=entry_kind(e) or "",
                chunk_id=e.chunk_ids[0],
                agent_id=e.agent_id,
                draft_set_id=e.draft_set_id,
                ticket_ref=e.ticket_ref,
                clicked_at=e.clicked_at,
                version=version.version,
                embedding=vectors[e.draft_set_id],
                brand=brands.get(e.ticket_ref),
            )
            for e in new
        ]


class FlywheelMemory:
    """The memory as the pipeline asks it (``rag.memory.FeedbackMemory``)."""

    def __init__(self, settings: Settings, db: Database, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    def votes(
        self, query_vector: np.ndarray, *, version: str, brand: str | None = None
    ) -> list[MemoryVote]:
        """What the nearest annotated tickets say of their passages, strongest first; only
        the votes enough agents (or enough weight) stand behind."""
        s = self.settings
        if not s.memory_enabled:
            return []
        vector = np.asarray(query_vector, dtype=np.float32)
        with self.db.connection() as conn:
            hits = store.nearest_memory(
                conn, version, vector, limit=s.memory_k * OVERFETCH, brand=brand
            )
            weights = store.latest_reliability(conn) if s.judge != "off" else {}
        return tally(nearest_tickets(hits, s.memory_k, s.memory_floor), weights, s, self.clock())

    def reply(
        self,
        query_vector: np.ndarray,
        *,
        version: str,
        brand: str | None = None,
        champion: str = "",
        other_than: str | None = None,
    ) -> ReusedReply | None:
        """The reply agents used on the nearest near-identical ticket (``rag.memory.
        ReplyMemory``; see ``flywheel.memory_replies``)."""
        return memory_replies.offered(
            self.settings,
            self.db,
            query_vector,
            version=version,
            brand=brand,
            champion=champion,
            other_than=other_than,
        )


def nearest_tickets(hits: Sequence[store.MemoryHit], k: int, floor: float) -> list[store.MemoryHit]:
    """The entries of the ``k`` nearest tickets at or above the similarity floor."""
    tickets: list[str] = []
    chosen = []
    for hit in hits:
        if hit.similarity < floor:
            break  # nearest first: the rest are further
        if hit.ticket_ref not in tickets:
            if len(tickets) == k:
                continue
            tickets.append(hit.ticket_ref)
        chosen.append(hit)
    return chosen


def tally(
    hits: Sequence[store.MemoryHit],
    weights: dict[str, float],
    settings: Settings,
    now: datetime,
) -> list[MemoryVote]:
    """Each passage's votes summed; an agent the latest cycle did not weigh counts 1.0."""
    half_life = settings.memory_half_life_days
    by_chunk: dict[int, list[tuple[store.MemoryHit, float]]] = {}
    for hit in hits:
        age_days = max(0.0, (now - hit.clicked_at).total_seconds() / 86400)
        strength = hit.similarity * weights.get(hit.agent_id, 1.0) * 0.5 ** (age_days / half_life)
        by_chunk.setdefault(hit.chunk_id, []).append((hit, strength))
    votes = []
    for chunk_id, cast in by_chunk.items():
        agents: dict[str, float] = {}
        for hit, strength in cast:
            agents[hit.agent_id] = max(agents.get(hit.agent_id, 0.0), strength)
        enough = (
            len(agents) >= settings.memory_min_agents
            or sum(agents.values()) >= settings.memory_min_weight
        )
        if not enough:
            continue
        votes.append(
            MemoryVote(
                chunk_id=chunk_id,
                score=round(sum(SIGN[hit.kind] * strength for hit, strength in cast), 6),
                tickets=len({hit.ticket_ref for hit, _ in cast}),
                agents=len(agents),
                entries=tuple(sorted(hit.id for hit, _ in cast)),
            )
        )
    return sorted(votes, key=lambda v: (-abs(v.score), v.chunk_id))


def build_memory(settings: Settings, db: Database) -> FlywheelMemory | None:
    """What the composition root plugs into the pipeline: None when the memory is off."""
    return FlywheelMemory(settings, db) if settings.memory_enabled else None


# --- the cycle's report --------------------------------------------------------------------


def cycle_figures(conn, since: datetime | None, until: datetime) -> dict[str, int]:
    """How big the memory is, and how many draft sets it moved in [since, until) (those whose
    drafts record memory votes that moved a source)."""
    size = store.memory_size(conn)
    start = since or datetime(1970, 1, 1, tzinfo=UTC)
    set_ids = [s.id for s in rag_store.draft_sets_created(conn, start, until)]
    infos = rag_store.draft_set_infos(conn, set_ids) if set_ids else {}
    moved = sum(
        any(d.producer.get("memory") for d in info.drafts.values()) for info in infos.values()
    )
    return {
        "entries": size.entries,
        "tickets": size.tickets,
        "agents": len(size.agents),
        "drafts_moved": moved,
        "drafts": len(set_ids),
    }


# --- whether the retrained models made the memory redundant -------------------------------

# the latest entries whose tickets a cycle measures the models on: bounds the work (a vote
# lookup per ticket, and each model's ranking of it) whatever the memory grows to
REDUNDANCY_CAP = 2_000


@dataclass(frozen=True)
class Ranking:
    """Models as drafts use them: a retriever's folder and a reranker's (None: no reranker is
    trained, and drafts keep the retriever's cosine order)."""

    retriever: str
    reranker: str | None = None


@dataclass(frozen=True)
class MemoryMove:
    """A passage the memory moves when one of its own tickets comes again."""

    query_id: str  # "set:<draft set id>", as the evaluation names a ticket
    chunk_id: int
    up: bool  # boosted or suggested; False: demoted


def memory_moves(
    settings: Settings,
    db: Database,
    events: Sequence[StoredFeedback],
    sets: dict[int, DraftSetInfo],
    live: tuple[EmbeddingVersion, Embedder],
    *,
    cap: int = REDUNDANCY_CAP,
) -> tuple[list[EvalQuery], list[MemoryMove]]:
    """The tickets of the memory's latest ``cap`` entries under the live version (read back
    from ``events``, their queries from ``sets``), and each vote ``FlywheelMemory.votes``
    casts when such a ticket comes again: what a model would have to do on its own for the
    memory to add nothing. Votes are read across brands (a click does not hold its
    ticket's brand)."""
    version, embedder = live
    with db.connection() as conn:
        held = store.memory_versions(conn)
    entries = sorted(
        (e for e in events if held.get(e.id) == version.version),
        key=lambda e: (e.clicked_at, e.id),
    )[-cap:]
    set_ids = sorted({e.draft_set_id for e in entries if e.draft_set_id in sets})
    queries = [EvalQuery(f"set:{s}", sets[s].query, frozenset()) for s in set_ids]
    queries = [q for q in queries if q.text]
    if not queries:
        return [], []
    memory = FlywheelMemory(settings, db)
    moves = []
    for query, vector in zip(queries, embedder.encode([q.text for q in queries]), strict=True):
        for vote in memory.votes(vector, version=version.version):
            if vote.score:
                moves.append(MemoryMove(query.query_id, vote.chunk_id, vote.score > 0))
    return queries, moves


def moves_made(
    evaluator: RetrieverEvaluator, moves: Sequence[MemoryMove], ranking: Ranking, settings: Settings
) -> dict[str, int]:
    """How many of ``moves`` the models make on their own, ranked as drafts rank (the
    retriever's top AITL_RETRIEVE_K reordered by the reranker): a passage moved up that they
    rank within AITL_CONTEXT_K, one moved down that they rank below it or do not find."""
    ranked = evaluator.retrieve(ranking.retriever)
    if ranking.reranker is not None:
        ranked = evaluator.rerank(
            ranked, ranking.reranker, settings.retrieve_k, settings.reranker_cosine_weight
        )
    context = {q: {c for c, _ in hits[: settings.context_k]} for q, hits in ranked.items()}
    agree = sum((m.chunk_id in context[m.query_id]) == m.up for m in moves)
    return {"agree": agree, "of": len(moves)}


def tickets_evaluator(
    evaluator: RetrieverEvaluator,
    queries: Sequence[EvalQuery],
    retrievers: Sequence[str],
    settings: Settings,
) -> RetrieverEvaluator:
    """An evaluator of ``queries`` over the cycle evaluator's chunks, searched as deep as
    drafts search, with the chunk vectors it already holds for ``retrievers``, on its encoder
    backend (what it encodes is logged as the memory check's)."""
    found = RetrieverEvaluator(
        list(zip(evaluator.chunk_ids, evaluator.chunk_texts, strict=True)),
        queries,
        k=settings.retrieve_k,
        retrieve_k=settings.retrieve_k,
        context_k=settings.context_k,
        backend=evaluator.backend,
        log=evaluator.log.under("memory check"),
    )
    for retriever in retrievers:
        known = evaluator.known_vectors(retriever)
        if known:
            found.seed(retriever, {chunk: vector for chunk, (_, vector) in known.items()})
    return found


def redundancy(
    settings: Settings,
    db: Database,
    *,
    events: Sequence[StoredFeedback],
    sets: dict[int, DraftSetInfo],
    live: tuple[EmbeddingVersion, Embedder],
    evaluator: RetrieverEvaluator,
    before: Ranking,
    after: Ranking | None = None,
    promoted: dict[str, bool] | None = None,
    cap: int = REDUNDANCY_CAP,
) -> dict[str, Any]:
    """Whether the retrained models made the memory redundant: of the memory's moves on its
    latest tickets, how many the live models (``before``) and the cycle's candidates
    (``after``: each kind the cycle trained, the live one for a kind it did not) make on
    their own. ``promoted``: each trained kind → whether the gate accepted it; "promoted" is
    True when all were, so that the candidates serve from now on."""
    started = time.monotonic()
    queries, moves = memory_moves(settings, db, events, sets, live, cap=cap)
    figures: dict[str, Any] = {"tickets": len(queries), "cap": cap}
    rankings = {"live": before} | ({"candidate": after} if after else {})
    found = None
    if moves:
        retrievers = [r.retriever for r in rankings.values()]
        found = tickets_evaluator(evaluator, queries, retrievers, settings)
    for name, ranking in rankings.items():
        made = moves_made(found, moves, ranking, settings) if found is not None else None
        figures[name] = made or {"agree": 0, "of": 0}
    if after is not None:
        kinds = promoted or {}
        figures["candidate"]["kinds"] = sorted(kinds)
        figures["promoted"] = bool(kinds) and all(kinds.values())
        figures["promoted_kinds"] = sorted(k for k, v in kinds.items() if v)
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures
