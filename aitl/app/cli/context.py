"""What every command shares: the settings and a lazily opened database."""

from __future__ import annotations

from functools import cached_property

from aitl.core.bootstrap import open_database
from aitl.core.db import Database
from aitl.core.settings import Settings


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return open_database(self.settings)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
