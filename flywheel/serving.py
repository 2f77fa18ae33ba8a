"""What the rest of the product drafts with: the registry's champions, and the challenger
generator as the other draft, rebuilt when the registry changes.

The retriever needs nothing here: its champion is the live knowledge-base index, which every
search reads. The reranker and the generator are loaded into memory, so a long-running worker
checks the registry every few seconds and builds a new pipeline after a promotion or rollback.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from aitl.core.db import Database
from aitl.core.settings import Settings
from flywheel import store
from rag import factory
from rag.pipeline import DraftPipeline

CHECK_EVERY_S = 15.0


def served_settings(
    settings: Settings, rows: list[store.ModelRow]
) -> tuple[Settings, Settings | None]:
    """Settings for the champion, and for the challenger generator when there is one."""
    live = {r.kind: r for r in rows if r.status == "champion"}
    update = {}
    if "reranker" in live:
        update["reranker_model"] = live["reranker"].path
    if "generator" in live:
        update["hf_adapter_path"] = Path(live["generator"].path)
    champion = settings.model_copy(update=update)
    challengers = [r for r in rows if r.kind == "generator" and r.status == "challenger"]
    if not challengers or settings.generator != "hf":
        return champion, None
    newest = max(challengers, key=lambda r: r.id)
    return champion, champion.model_copy(update={"hf_adapter_path": Path(newest.path)})


class LivePipeline:
    """A callable giving the current pipeline; cheap to call before every draft."""

    def __init__(self, settings: Settings, db: Database, *, check_every_s: float = CHECK_EVERY_S):
        self.settings = settings
        self.db = db
        self.check_every_s = check_every_s
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
        champion, challenger = served_settings(self.settings, rows)
        other = factory.generator(challenger) if challenger is not None else None
        self._pipeline = factory.pipeline(champion, self.db, challenger=other)
        self._signature = signature
