"""Every kind of request Slack documents, in the shapes Slack's own Bolt test suite sends
(tests/fixtures/slack/bolt-python: events, block actions, block suggestions, view submissions
and closes, shortcuts, message actions), to the real app behind our endpoint, once and again
as Slack's retry: each is acknowledged with 200 and none stores anything, since none is one
of our own buttons or modals (those are counted exactly once in test_slack_bot and
test_slack_protocol)."""

from __future__ import annotations

import csv
import json
import urllib.parse

import pytest

from tests.support.paths import FIXTURES_DIR
from tests.support.slack_app import (  # noqa: F401 (the slack and settings fixtures)
    admin_settings_fixture,
    post,
    slack_fixture,
)

PAYLOADS = FIXTURES_DIR / "slack" / "bolt-python" / "payloads"
INDEX = list(csv.DictReader((PAYLOADS / "INDEX.tsv").open(), delimiter="\t"))
INTERACTIVE = {"block_actions", "block_suggestion", "view_submission", "view_closed"}
INTERACTIVE |= {"shortcut", "message_action"}
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
STORED = ("feedback_events", "feedback_dismissals", "procrastinate_jobs", "slack_requests")


def encoded(row: dict[str, str]) -> tuple[bytes, str]:
    payload = json.loads((PAYLOADS / row["file"]).read_text())
    if row["type"] in INTERACTIVE:
        form = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return form.encode(), "application/x-www-form-urlencoded"
    return json.dumps(payload).encode(), "application/json"


def stored(db) -> dict[str, int]:
    with db.connection() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in STORED}


@pytest.mark.parametrize("row", INDEX, ids=[r["file"].removesuffix(".json") for r in INDEX])
def test_each_kind_slack_sends_is_acknowledged_and_stores_nothing(services, slack, web, kb_db, row):
    body, content_type = encoded(row)
    for headers in ({}, RETRY):
        response = post(slack, web, body, **{"Content-Type": content_type}, **headers)
        assert response.status_code == 200, response.text
        if row["type"] == "url_verification":
            assert response.json()["challenge"] == json.loads(body)["challenge"]
    assert stored(kb_db) == dict.fromkeys(STORED, 0)


def test_an_ssl_check_is_acknowledged(services, slack, web, kb_db):
    body = urllib.parse.urlencode({"ssl_check": "1", "token": slack.verification_token})
    response = post(
        slack, web, body.encode(), **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert stored(kb_db) == dict.fromkeys(STORED, 0)
