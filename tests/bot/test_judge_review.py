"""App Home's review queue of the judge on the real Bolt app behind our endpoint: an admin's
Judge is right / Judge is wrong is stored once (a later answer replaces it, Slack's retry of
an earlier one does not) and Home is published again without the item answered; an agent is
refused and nothing is stored; a value no button of ours carries is refused at the endpoint,
and one naming a verdict its run does not hold is explained, storing nothing."""

from __future__ import annotations

import copy
import json

import pytest

from bot.judge_review_views import AGREE, DISAGREE
from sandboxes.slack.state import AGENT_BOB, encode_interactivity
from tests.support.judge_review import Click, judged_clicks
from tests.support.sandboxes import connected_settings
from tests.support.slack_app import (  # noqa: F401 (the slack fixture)
    ADMIN,
    post,
    slack_fixture,
    wait_for,
)

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
MANAGER = "U0MANAGER"  # a manager who is not an admin


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    """The sandboxes, with ``ADMIN`` the one admin and ``MANAGER`` a manager."""
    slack.add_user(MANAGER, "mona", "mona@sandbox.example")
    return connected_settings(
        kb_settings,
        slack,
        zendesk,
        tmp_path,
        slack_admin_ids=[ADMIN],
        slack_manager_ids=[MANAGER],
    )


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def reviews(db):
    return rows(db, "SELECT run_id, event_id, reviewer_id, agrees FROM judge_reviews ORDER BY id")


def judged(db) -> tuple[int, int, int]:
    """A run that dropped a relevance mark and kept a preference; (run, dropped, kept)."""
    run, (dropped, kept) = judged_clicks(
        db,
        [
            Click("relevance", "relevant", keep=False, rule="no_shared_words", chunk=1),
            Click("preference", "A"),
        ],
    )
    return run, dropped, kept


def home_text(slack, user=ADMIN) -> str:
    return json.dumps(slack.home(user) or {}, ensure_ascii=False)


def open_home(slack, web, user=ADMIN) -> dict:
    body = json.dumps(slack.app_home_opened(user)).encode()
    assert post(slack, web, body, **{"Content-Type": "application/json"}).status_code == 200
    wait_for(lambda: "Judge is right" in home_text(slack, user))
    return slack.home(user)


def block(run: int, event: int) -> str:
    return f"aitl.judge_review.{run}.{event}"


def review_click(slack, home: dict, action: str, run: int, event: int, user=ADMIN) -> dict:
    return slack.block_actions(user, None, None, action, block(run, event), view=home["id"])


def dms(slack, user) -> list[str]:
    return [m["text"] for m in slack.messages(user)]


def test_an_admin_reviews_the_judge_and_home_shows_what_is_left(services, slack, web, kb_db):
    run, dropped, kept = judged(kb_db)
    home = open_home(slack, web)
    shown = home_text(slack)
    assert block(run, dropped) in shown and block(run, kept) in shown
    assert "Judge vs reviewers: no reviews yet" in shown
    assert "marked *relevant*" in shown and "preferred *draft A*" in shown

    agree = review_click(slack, home, AGREE, run, dropped)
    assert post(slack, web, encode_interactivity(agree)).status_code == 200
    assert reviews(kb_db) == [(run, dropped, ADMIN, True)]
    # Home again, after the ack: the answered item left, the other stays
    wait_for(lambda: block(run, dropped) not in home_text(slack))
    assert block(run, kept) in home_text(slack)

    home = slack.home(ADMIN)
    disagree = review_click(slack, home, DISAGREE, run, kept)
    assert post(slack, web, encode_interactivity(disagree)).status_code == 200
    assert reviews(kb_db) == [(run, dropped, ADMIN, True), (run, kept, ADMIN, False)]
    wait_for(lambda: "Nothing left to review" in home_text(slack))
    # the judge dropped one (reviewer: dropped too) and kept one (reviewer: drop): the judge's
    # labels are drop, keep; the reviewer's drop, drop: p_o = 1/2, p_e = 1/2, kappa 0
    assert (
        "Judge vs reviewers: κ 0.00 (n = 2; agreed on 1) in the last 7 days,"
        " all time κ 0.00 (n = 2)" in home_text(slack)
    )

    # the admin changes their mind on the first (a later click); then Slack retries the
    # earlier click: the later answer stands, and nothing is stored twice
    changed = copy.deepcopy(agree)
    action = changed["actions"][0]
    action |= {"action_id": DISAGREE, "action_ts": f"{float(action['action_ts']) + 5:.6f}"}
    assert post(slack, web, encode_interactivity(changed)).status_code == 200
    assert post(slack, web, encode_interactivity(agree), **RETRY).status_code == 200
    assert reviews(kb_db) == [(run, dropped, ADMIN, False), (run, kept, ADMIN, False)]


def test_an_agent_cannot_review_the_judge(services, slack, web, kb_db):
    run, dropped, _ = judged(kb_db)
    home = open_home(slack, web)
    agent_home = json.dumps(open_home_of_agent(slack, web))
    assert "Tickets you annotated" in agent_home and "Review the judge" not in agent_home
    forged = review_click(slack, home, AGREE, run, dropped)
    forged["user"] = {**forged["user"], "id": AGENT_BOB}
    assert post(slack, web, encode_interactivity(forged)).status_code == 200
    wait_for(lambda: any("review the judge" in t for t in dms(slack, AGENT_BOB)))
    assert reviews(kb_db) == []
    assert "Only AITL admins and managers review the judge" in dms(slack, AGENT_BOB)[-1]
    # the same click from the admin is stored
    allowed = review_click(slack, home, AGREE, run, dropped)
    assert post(slack, web, encode_interactivity(allowed)).status_code == 200
    assert reviews(kb_db) == [(run, dropped, ADMIN, True)]


def test_a_manager_reviews_the_judge_too(services, slack, web, kb_db):
    run, dropped, _ = judged(kb_db)
    home = open_home(slack, web, MANAGER)
    assert "Admin" not in [b.get("text", {}).get("text") for b in home["blocks"]]
    click = review_click(slack, home, DISAGREE, run, dropped, user=MANAGER)
    assert post(slack, web, encode_interactivity(click)).status_code == 200
    assert reviews(kb_db) == [(run, dropped, MANAGER, False)]
    wait_for(lambda: block(run, dropped) not in home_text(slack, MANAGER))


def open_home_of_agent(slack, web) -> dict:
    body = json.dumps(slack.app_home_opened(AGENT_BOB)).encode()
    assert post(slack, web, body, **{"Content-Type": "application/json"}).status_code == 200
    wait_for(lambda: slack.home(AGENT_BOB))
    return slack.home(AGENT_BOB)


def test_malformed_and_stale_review_values_store_nothing(services, slack, web, kb_db):
    run, dropped, _ = judged(kb_db)
    other_run, (elsewhere,) = judged_clicks(kb_db, [Click("adoption", "not_used")])
    home = open_home(slack, web)
    assert block(other_run, elsewhere) in home_text(slack), "the latest run is sampled"
    click = review_click(slack, home, AGREE, other_run, elsewhere)

    # values no button of ours carries: refused at the endpoint, before any listener
    for n, value in enumerate(("", "abc", f"{run}:", f"{run}:x", "1:2:3", "9" * 19 + ":1")):
        bad = copy.deepcopy(click)
        bad["actions"][0] |= {"value": value, "action_ts": f"{n}.5"}
        response = post(slack, web, encode_interactivity(bad))
        assert response.status_code == 400, value
        assert "names no verdict" in response.json()["error"]

    # a verdict the run does not hold (a crafted or outdated button): told why, nothing stored
    for n, value in enumerate((f"{other_run}:{dropped}", f"{run}:{10**12}")):
        stale = copy.deepcopy(click)
        stale["actions"][0] |= {"value": value, "action_ts": f"{n}.7"}
        assert post(slack, web, encode_interactivity(stale)).status_code == 200
        event = value.split(":")[1]
        wait_for(lambda event=event: any(f"on click {event}" in t for t in dms(slack, ADMIN)))
    assert "Nothing was recorded: run" in dms(slack, ADMIN)[-1]
    assert reviews(kb_db) == []
    assert rows(kb_db, "SELECT count(*) FROM slack_requests WHERE kind = 'judge_review'") == [(0,)]

    # the real button still works
    assert post(slack, web, encode_interactivity(click)).status_code == 200
    assert reviews(kb_db) == [(other_run, elsewhere, ADMIN, True)]
