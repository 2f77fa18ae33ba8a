"""The flywheel's parts for the worker and the CLI, built from Settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cached_property

from aitl.db import Database
from aitl.logs import mask
from aitl.settings import Settings
from flywheel.cycle import CycleReport, Flywheel, Progress
from flywheel.registry import Registry
from rag import factory

log = logging.getLogger(__name__)


# tells a person (a Slack user id) something, e.g. how the model change they asked for ended
Tell = Callable[[str, str], None]


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

    def tell_admins(self, text: str) -> None:
        """Say it to every admin (how a cycle ended: it may have changed what is live)."""
        try:
            admins = sorted(set(self._admins()))
        except Exception:  # the directory is unreachable: the note is still logged
            log.exception("could not list the admins to tell: %s", text)
            admins = []
        if not admins:
            log.info("to the admins: %s", mask(text))
        for admin in admins:
            self.tell(admin, text)

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
