"""What the rest of the product drafts with: the registry's champions, and the challenger
generator as the other draft, rebuilt when the registry changes.

The retriever needs nothing here: its champion is the live knowledge-base index, which every
search reads. The reranker and the generator are loaded into memory, so a long-running worker
checks the registry every few seconds and builds a new pipeline after a promotion or rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.runnables import Runnable

from aitl.core.db import Database
from aitl.core.settings import Settings
from flywheel import store
from rag import exceptions as rag_exceptions
from rag import factory
from rag.memory import FeedbackMemory
from rag.pipeline import DraftPipeline

log = logging.getLogger(__name__)
CHECK_EVERY_S = 15.0


@dataclass(frozen=True)
class Served:
    """What drafts are made with: settings (the reranker champion folded in) and the two
    generators' registry rows; ``llm_challenger`` when the untrained LLM is the challenger."""

    settings: Settings
    champion: store.ModelRow | None
    challenger: store.ModelRow | None
    llm_challenger: bool


def served(settings: Settings, rows: list[store.ModelRow]) -> Served:
    """The registry's champions, and the generator challenger in the online A/B test: the
    oldest challenger not yet decided (one test at a time: adapters trained meanwhile wait
    their turn), else, while the extractive drafter is champion, the untrained LLM itself
    (``AITL_LLM_CHALLENGER``) until the test retires it."""
    live = {r.kind: r for r in rows if r.status == "champion"}
    update = {}
    if "reranker" in live:
        update["reranker_model"] = live["reranker"].path
    backend = factory.llm_backend(settings)
    waiting = challengers(rows) if backend else []
    in_test = waiting[0] if waiting else None
    champion = live.get("generator") if backend else None
    # the untrained LLM stays out once the online test has decided on it
    decided = any(r.kind == "generator" and r.version == factory.SHIPPED_LLM for r in rows)
    untrained = backend is not None and in_test is None and champion is None and not decided
    return Served(
        settings.model_copy(update=update),
        champion,
        in_test,
        untrained and settings.generator == "extractive",
    )


def challengers(rows: list[store.ModelRow]) -> list[store.ModelRow]:
    """The generator challengers: the one in the A/B test and those waiting, oldest first."""
    found = [r for r in rows if r.kind == "generator" and r.status == "challenger"]
    return sorted(found, key=lambda r: r.id)


def names(choice: Served) -> tuple[str, str]:
    """Champion and challenger as drafts record them and the online duel counts them."""
    settings = choice.settings
    champion = (
        choice.champion.version if choice.champion else factory.shipped_generator_name(settings)
    )
    if choice.challenger is not None:
        return champion, choice.challenger.version
    return champion, factory.SHIPPED_LLM if choice.llm_challenger else ""


def adapter_of(row: store.ModelRow) -> Path | None:
    """A generator row's LoRA adapter folder; None when the row is a base model itself."""
    return Path(row.path) if (Path(row.path) / "adapter_config.json").is_file() else None


def drafters(choice: Served) -> tuple[Runnable | None, Runnable | None]:
    """The champion (None: the one AITL_GENERATOR names) and the challenger generators.

    A challenger that cannot be built (a missing or corrupt model, an adapter for another
    base) is logged and left out: the champion keeps drafting both replies.
    """
    settings = choice.settings
    champion = None
    if choice.champion is not None:
        try:
            champion = factory.llm_drafter(
                settings, adapter_of(choice.champion), label=choice.champion.version
            )
        except rag_exceptions.RagError as exc:
            log.error(
                "the live generator %s cannot serve (%s); drafting with AITL_GENERATOR=%s",
                choice.champion.version,
                exc,
                settings.generator,
            )
    try:
        if choice.challenger is not None:
            row = choice.challenger
            return champion, factory.llm_drafter(settings, adapter_of(row), label=row.version)
        if choice.llm_challenger:
            return champion, factory.llm_drafter(settings)
    except rag_exceptions.RagError as exc:
        log.error("no challenger draft: %s", exc)
    return champion, None


class LivePipeline:
    """A callable giving the current pipeline; cheap to call before every draft. ``memory``
    (the feedback memory) outlives promotions: every pipeline built is given it."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        check_every_s: float = CHECK_EVERY_S,
        memory: FeedbackMemory | None = None,
    ):
        self.settings = settings
        self.db = db
        self.check_every_s = check_every_s
        self.memory = memory
        self._lock = threading.Lock()
        self._checked = 0.0
        self._signature: tuple | None = None
        self._pipeline: DraftPipeline | None = None

    def __call__(self) -> DraftPipeline:
        with self._lock:
            if self._pipeline is None or time.monotonic() - self._checked > self.check_every_s:
                self._refresh()
            assert self._pipeline is not None
            return self._pipeline

    def _refresh(self) -> None:
        with self.db.connection() as conn:
            signature = store.champions_signature(conn)
            rows = store.models(conn) if signature != self._signature else []
        self._checked = time.monotonic()
        if signature == self._signature and self._pipeline is not None:
            return
        choice = served(self.settings, rows)
        champion, challenger = drafters(choice)
        self._pipeline = factory.pipeline(
            choice.settings,
            self.db,
            champion=champion,
            challenger=challenger,
            names=names(choice),
            memory=self.memory,
        )
        self._signature = signature
