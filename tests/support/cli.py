"""The aitl command line as tests read it."""

from __future__ import annotations

from typer.testing import CliRunner

from aitl.app.cli import app
from aitl.core.settings import Settings


def flywheel_runs(settings: Settings) -> str:
    """``aitl flywheel runs`` against the settings' database, one line (rich wraps tables)."""
    env = {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AITL_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "600",
    }
    listed = CliRunner().invoke(app, ["flywheel", "runs"], env=env, catch_exceptions=False)
    return " ".join(listed.output.split())
