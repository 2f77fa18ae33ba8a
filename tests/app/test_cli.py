"""The aitl command line, driven through Typer against the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from aitl.app.cli import app


@pytest.fixture
def cli(database_url, tmp_path):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str):
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        return result

    return run


def test_ingest_search_and_ask(cli, sample_kb):
    ingest = cli("kb", "ingest", str(sample_kb), "--source", "samples")
    assert ingest.exit_code == 0, ingest.output
    assert "added 60" in ingest.output and "chunks embedded" in ingest.output

    again = cli("kb", "ingest", str(sample_kb), "--source", "samples")
    assert "added 0, updated 0, unchanged 60, deleted 0" in again.output

    search = cli("kb", "search", "how do I reset my password", "-k", "3")
    assert search.exit_code == 0 and "Reset your password" in search.output

    asked = cli("ask", "--json", "My refund has not arrived, it has been two weeks")
    assert asked.exit_code == 0, asked.output
    payload = json.loads(asked.output)
    assert [d["label"] for d in payload["drafts"]] == ["A", "B"]
    assert all(d["citations"] for d in payload["drafts"])
    assert any("refund" in c["title"].lower() for c in payload["drafts"][0]["citations"])

    stats = cli("kb", "stats")
    assert "documents: 60" in stats.output and "live" in stats.output


def test_db_upgrade_and_status(cli):
    assert "schema is current" in cli("db", "upgrade").output
    status = cli("db", "status")
    assert status.exit_code == 0 and "schema is current" in status.output


def test_errors_reach_the_user_as_one_clear_line(database_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "AITL_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", "from aitl.app.cli import main; main()", "ask", "hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "error: The knowledge base is empty: run `aitl kb ingest PATH` first." in done.stderr
    assert "Traceback" not in done.stderr
