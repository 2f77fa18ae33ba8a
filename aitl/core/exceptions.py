"""Errors of the application shell.

AitlError
├── ConfigurationError
├── NotRetryable          (mixed into an error that retrying a job cannot fix)
└── DatabaseError
    ├── DatabaseUnavailable
    ├── VectorExtensionMissing
    └── MigrationsPending
"""

from __future__ import annotations


class AitlError(Exception):
    """Something went wrong in AITL."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class NotRetryable(AitlError):
    """Retrying will not help: a queued job that raises this ends at once, failed, with its
    reason, instead of trying again (see ``aitl.core.queue.Backoff``)."""


class ConfigurationError(AitlError):
    """A setting is missing or invalid."""


class DatabaseError(AitlError):
    """The database could not do what was asked."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached."""


class VectorExtensionMissing(DatabaseError):
    """The database has no pgvector extension available."""


class MigrationsPending(DatabaseError):
    """The database schema is older than this code; run `aitl db upgrade`."""
