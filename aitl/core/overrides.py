"""Settings an admin edits at run time (App Home), layered over the deployment's Settings.

The environment gives the defaults; a value saved here wins until it is cleared. Only the
names in ``EDITABLE`` can be saved, and each is validated as the Settings field it overrides,
so a process that reads ``effective()`` gets a Settings object as valid as one from the env.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from aitl.core.exceptions import ConfigurationError
from aitl.core.settings import Settings

EDITABLE = frozenset(
    {
        "slack_routes",
        "slack_default_channel",
        "slack_agents_usergroup",
        "slack_agents_channel",
        "slack_manager_ids",
        "slack_managers_usergroup",
        "slack_digest_channel",
        "retrain_cron",
        "digest_cron",
        "flywheel_admin_notes",
    }
)


class InvalidOverride(ConfigurationError):
    """An admin setting was refused."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


def load(conn: psycopg.Connection) -> dict[str, Any]:
    rows = conn.execute("SELECT name, value FROM admin_settings").fetchall()
    return {name: value for name, value in rows if name in EDITABLE}


def effective(settings: Settings, conn: psycopg.Connection) -> Settings:
    """The deployment's settings with the admin's saved changes applied."""
    saved = load(conn)
    return settings.model_copy(update=saved) if saved else settings


def validate(settings: Settings, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes as Settings would hold them; raises InvalidOverride naming each problem."""
    unknown = {k: "cannot be changed here" for k in changes if k not in EDITABLE}
    if unknown:
        raise InvalidOverride(unknown)
    data = {**settings.model_dump(include=set(Settings.model_fields) - {"database_url"})}
    data.update(changes)
    try:
        checked = Settings.model_validate(data)
    except ValidationError as exc:
        problems = {
            str(err["loc"][0]): err["msg"] for err in exc.errors() if err["loc"][0] in changes
        }
        raise InvalidOverride(problems or {"settings": str(exc)}) from exc
    return {k: getattr(checked, k) for k in changes}


def save(conn: psycopg.Connection, settings: Settings, changes: dict[str, Any], by: str) -> None:
    """Validate and store; ``None`` clears a saved value so the environment's applies again."""
    cleared = [k for k, v in changes.items() if v is None and k in EDITABLE]
    checked = validate(settings, {k: v for k, v in changes.items() if k not in cleared})
    for name in cleared:
        conn.execute("DELETE FROM admin_settings WHERE name = %s", (name,))
    for name, value in checked.items():
        conn.execute(
            "INSERT INTO admin_settings (name, value, updated_by) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            (name, Jsonb(value), by),
        )
