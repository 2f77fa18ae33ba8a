"""What /healthz reports: the database answers and its schema matches this code."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from aitl.core import migrations
from aitl.core.db import Database


@dataclass
class Health:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


def check(db: Database) -> Health:
    health = Health(ok=True)
    try:
        with db.connection() as conn:
            conn.execute("SELECT 1")
        health.checks["database"] = "ok"
    except psycopg.Error as exc:
        return Health(ok=False, checks={"database": f"unreachable: {type(exc).__name__}"})
    waiting = migrations.pending(db.url)
    health.checks["migrations"] = "current" if not waiting else f"pending: {', '.join(waiting)}"
    health.ok = not waiting
    return health
