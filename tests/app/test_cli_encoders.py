"""``aitl kb stats`` and ``aitl kb prepare``: where the encoders run, as an admin reads it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aitl.app.cli import app

pytestmark = pytest.mark.slow


def test_an_admin_sees_and_prepares_the_encoders_backend(database_url, tmp_path, sample_kb):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str, backend: str = "torch"):
        result = runner.invoke(
            app, list(args), env={**env, "AITL_ENCODER_BACKEND": backend}, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())  # rich wraps long lines

    cli("kb", "ingest", str(sample_kb), "--source", "samples")
    stats = cli("kb", "stats")
    assert "written by" in stats and "torch" in stats
    assert "embedding model runs on: torch float32 (AITL_ENCODER_BACKEND=torch)" in stats

    # the admin switches the setting: until an export exists, torch serves, and says so
    switched = cli("kb", "stats", backend="onnx")
    assert "torch float32 for now: no current export for AITL_ENCODER_BACKEND=onnx" in switched

    prepared = cli("kb", "prepare", backend="onnx")
    assert "embedding model: onnx, agreement 1.0000" in prepared
    assert "chosen" in prepared
    assert (tmp_path / "data" / "models" / "exports").is_dir()
    assert "embedding model runs on: onnx, agreement" in cli("kb", "stats", backend="onnx")
