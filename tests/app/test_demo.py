"""`aitl demo --once` end to end, as a newcomer runs it: tickets arrive in the Zendesk sandbox,
become Slack threads, simulated agents click through the real endpoint, the flywheel runs and
the digest reaches the managers in the Slack sandbox."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = pytest.mark.slow


def test_demo_once_runs_the_whole_loop(database_url, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AITL_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "AITL_FLYWHEEL_MIN_EVAL_QUERIES": "1",
        "AITL_FLYWHEEL_MIN_EXAMPLES": "4",
        "COLUMNS": "200",  # rich wraps table titles at 80 columns when not on a terminal
    }
    args = ["demo", "--once", "--tickets", "18", "--agents", "2", "--port", "0"]
    done = subprocess.run(
        [sys.executable, "-c", "from aitl.app.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "18 tickets over 6 simulated weeks → 18 Slack threads" in out
    assert "the flywheel cycle (succeeded" in out and "what agents saw" in out

    with psycopg.connect(database_url) as conn:

        def one(sql: str):
            return conn.execute(sql).fetchone()

        assert one("SELECT count(*) FROM zendesk_tickets")[0] == 18
        assert one("SELECT count(*) FROM slack_cards WHERE card_ts IS NOT NULL")[0] == 18
        # the answers standing (an adoption's reasons supersede its click: both stay)
        kinds = dict(
            conn.execute(
                "SELECT kind, count(*) FROM feedback_events e WHERE NOT EXISTS"
                " (SELECT 1 FROM feedback_events later WHERE later.supersedes = e.id)"
                " GROUP BY kind"
            )
        )
        assert set(kinds) >= {"preference", "adoption", "relevance"}
        assert kinds["preference"] == kinds["adoption"] == 18, "every card answered once"
        assert one("SELECT count(*) FROM feedback_events WHERE source <> 'slack'")[0] == 0
        assert one("SELECT count(*) FROM feedback_events WHERE kind = 'missing_knowledge'")[0] > 0
        [(status, trigger)] = conn.execute("SELECT status, trigger FROM flywheel_runs").fetchall()
        assert (trigger, status) == ("demo", "succeeded")
        sent = dict(conn.execute("SELECT recipient, status FROM digest_deliveries"))
        assert sent == {"U0MANAGER": "sent", "C0DIGEST": "sent"}
