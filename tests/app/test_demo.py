"""`aitl demo --once` end to end, as a newcomer runs it: tickets arrive in the Zendesk sandbox,
become Slack threads, simulated agents click through the real endpoint, the flywheel runs and
the digest reaches the managers in the Slack sandbox."""

from __future__ import annotations

import os
import re
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
    args = ["demo", "--once", "--tickets", "18", "--agents", "2", "--port", "0", "--quick"]
    done = subprocess.run(
        [sys.executable, "-c", "from aitl.app.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "18 tickets over 6 simulated weeks" in out and "→ 18 Slack threads" in out
    # two cycles, each with its before/after table on the tickets around it
    assert "the cycle after week 1" in out and "the cycle after week 3" in out
    assert out.count("what agents saw: weeks") == 2
    assert "weeks 0–1 before it vs weeks 2–3 after it" in out
    assert "weeks 2–3 before it vs weeks 4–5 after it" in out
    assert "the online A/B test of the drafts" in out and "now: " in out
    assert "what the loop changed: " in out, "what was promoted or retired, or plainly nothing"
    assert out.count(" done in ") == 6, "each replayed week says how long it took"
    flat = " ".join(out.split())  # the console wraps long lines
    moved = re.findall(r"earlier clicks moved a source on (\d+) of its (\d+) cards", flat)
    assert len(moved) == 6 and all(int(m) <= int(n) for m, n in moved), moved
    assert moved[0][0] == "0", "before any click, nothing to remember"
    assert flat.count("the feedback memory now holds") == 6

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
                " AND source = 'slack' GROUP BY kind"
            )
        )
        assert set(kinds) >= {"preference", "adoption", "relevance"}
        assert kinds["preference"] == kinds["adoption"] == 18, "every card answered once"
        assert one("SELECT count(*) FROM feedback_events WHERE kind = 'missing_knowledge'")[0] > 0
        # the drafts agents used were sent in Zendesk, and the connector compared them
        sent_replies = one("SELECT count(*) FROM feedback_events WHERE source = 'zendesk'")[0]
        assert sent_replies > 0
        assert f"{sent_replies} replies sent in Zendesk" in out
        # each replayed week stands at its own past calendar week, the cycles between them
        weeks = one(
            "SELECT count(DISTINCT date_trunc('week', created_at)), max(created_at) < now()"
            " - interval '1 day' FROM rag_draft_sets"
        )
        assert weeks == (6, True)
        runs = conn.execute("SELECT trigger, status FROM flywheel_runs ORDER BY cutoff").fetchall()
        assert runs == [("demo", "succeeded")] * 2
        stamps = conn.execute(
            "SELECT started_at, extract(isodow FROM started_at) FROM flywheel_runs"
        ).fetchall()
        assert all(day == 1 for _, day in stamps), "cycles stand at the Monday after a week"
        sent = dict(conn.execute("SELECT recipient, status FROM digest_deliveries"))
        assert sent == {"U0MANAGER": "sent", "C0DIGEST": "sent"}
