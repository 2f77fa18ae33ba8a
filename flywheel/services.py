"""The flywheel's parts for the worker and the CLI, built from Settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Literal

import psycopg

from aitl.core import overrides
from aitl.core.db import Database
from aitl.core.logs import mask
from aitl.core.settings import Settings
from flywheel.cycle import CycleReport, Flywheel, Progress
from flywheel.online import OnlineDecision
from flywheel.online import note as online_note
from flywheel.registry import Registry
from rag import factory

log = logging.getLogger(__name__)


# tells a person (a Slack user id) something, e.g. how the model change they asked for ended
Tell = Callable[[str, str], None]
# how a cycle ended, for whom to tell: a model went live, nothing did (trained nothing, kept the
# champions, did not start), it failed, or it ran but has a warning (the judge's watch)
CycleOutcome = Literal["promoted", "unchanged", "failed", "warning"]
# settings.flywheel_admin_notes → the outcomes every admin hears of
ADMIN_NOTES: dict[str, frozenset[str]] = {
    "all": frozenset({"promoted", "unchanged", "failed", "warning"}),
    "changes": frozenset({"promoted", "failed", "warning"}),
    "failures": frozenset({"failed", "warning"}),
    "none": frozenset(),
}


class FlywheelServices:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        tell: Tell | None = None,
        admins: Callable[[], Iterable[str]] | None = None,
        waiting: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._waiting = waiting
        self._tell = tell
        self._admins = admins or (lambda: ())

    def tell_cycle_end(self, text: str, *, outcome: CycleOutcome, asked_by: str | None) -> None:
        """Admins hear how a cycle ended as far as ``flywheel_admin_notes`` wants (a quiet week
        need not ping every admin); the admin who asked for the cycle hears it regardless."""
        admins: set[str] = set()
        if outcome in ADMIN_NOTES[self._admin_notes()]:
            try:
                admins = set(self._admins())
            except Exception:  # the directory is unreachable: the note is still logged
                log.exception("could not list the admins to tell: %s", mask(text))
        if asked_by:
            admins.add(asked_by)
        if not admins:
            log.info("cycle ended (%s), nobody to tell: %s", outcome, mask(text))
        for admin in sorted(admins):
            self.tell(admin, text)

    def _admin_notes(self) -> str:
        """As an admin last chose in App Home, else as deployed; a failure that has the
        database down still reaches the admins as deployed."""
        try:
            with self.db.connection() as conn:
                return overrides.effective(self.settings, conn).flywheel_admin_notes
        except psycopg.Error:
            log.exception("could not read the admins' choice of notes; using the settings'")
            return self.settings.flywheel_admin_notes

    def tell(self, user: str, text: str) -> None:
        """Say it to ``user`` if the worker can reach people (Slack is set up); log it anyway."""
        text = mask(text)  # an error's text may quote a connection string
        log.info("to %s: %s", user, text)
        if self._tell is None:
            return
        try:
            self._tell(user, text)
        except Exception:  # telling is a courtesy: the change itself has happened or not
            log.exception("could not tell %s: %s", user, text)

    @cached_property
    def registry(self) -> Registry:
        versions = factory.embedding_versions(self.settings, self.db)
        return Registry(self.db, versions, waiting=self._waiting)

    def run_cycle(self, trigger: str, progress: Progress | None = None) -> CycleReport:
        return Flywheel(self.settings, self.db, progress=progress).run(trigger)

    @cached_property
    def online(self) -> OnlineDecision:
        return OnlineDecision(self.settings, self.db, self.registry)

    def decide_duel(self) -> str | None:
        """Act on the online A/B test if it has decided (see ``flywheel.online``), and tell
        the admins as for a cycle: a promotion as a change, a retirement as none to what
        serves. Returns what they were told, when it acted."""
        duel = self.online.check()
        if duel is None:
            return None
        after = self.online.pair()
        text = online_note(duel, after[1] if after else None)
        outcome: CycleOutcome = "promoted" if duel.action == "promote" else "unchanged"
        self.tell_cycle_end(text, outcome=outcome, asked_by=None)
        return text
