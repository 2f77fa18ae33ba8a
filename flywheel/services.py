"""The flywheel's parts for the worker and the CLI, built from Settings."""

from __future__ import annotations

from functools import cached_property

from aitl.db import Database
from aitl.settings import Settings
from flywheel.cycle import CycleReport, Flywheel, Progress
from flywheel.registry import Registry
from rag import factory


class FlywheelServices:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.db, factory.embedding_versions(self.settings, self.db))

    def run_cycle(self, trigger: str, progress: Progress | None = None) -> CycleReport:
        return Flywheel(self.settings, self.db, progress=progress).run(trigger)
