"""Schema migrations: ordered plain SQL files in ``aitl/core/migrations``, applied by yoyo.

The job queue's own schema comes from procrastinate and is applied beside ours.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from aitl.core import exceptions

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _backend(url: str):
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgres", "postgresql"):
        raise exceptions.ConfigurationError(
            f"DATABASE_URL must be a postgresql:// URL, not {scheme}"
        )
    return get_backend(f"postgresql+psycopg://{rest}")


def pending(url: str) -> list[str]:
    """Ids of our migrations not yet applied, plus ``procrastinate`` if the queue has no schema."""
    backend = _backend(url)
    try:
        ids = [m.id for m in backend.to_apply(read_migrations(str(MIGRATIONS_DIR)))]
    finally:
        backend.connection.close()
    if not _queue_schema_present(url):
        ids.append("procrastinate")
    return ids


def upgrade(url: str) -> list[str]:
    """Apply whatever is pending; safe to run from several processes at once."""
    backend = _backend(url)
    try:
        with backend.lock():
            todo = backend.to_apply(read_migrations(str(MIGRATIONS_DIR)))
            backend.apply_migrations(todo)
            applied = [m.id for m in todo]
    finally:
        backend.connection.close()
    if _apply_queue_schema(url):
        applied.append("procrastinate")
    return applied


def _queue_schema_present(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('public.procrastinate_jobs')").fetchone()
    return row is not None and row[0] is not None


def _apply_queue_schema(url: str) -> bool:
    from procrastinate.schema import SchemaManager

    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('aitl.queue_schema'))")
        exists = conn.execute("SELECT to_regclass('public.procrastinate_jobs')").fetchone()[0]
        if exists is not None:
            return False
        conn.execute(SchemaManager.get_schema())
    return True
