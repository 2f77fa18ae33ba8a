"""Start-up shared by every process: open the database and bring its schema up to date."""

from __future__ import annotations

import logging

from aitl.core import db, migrations
from aitl.core.settings import Settings

log = logging.getLogger(__name__)


def open_database(settings: Settings, *, migrate: bool = True) -> db.Database:
    """Connect (starting the embedded server if needed) and apply pending migrations."""
    url = db.resolve_url(settings)
    db.ensure_vector_extension(url)
    if migrate:
        applied = migrations.upgrade(url)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
    return db.connect(settings, url=url)
