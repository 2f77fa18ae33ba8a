"""The parts of Slack's protocol beyond our buttons, on the real Bolt app behind our endpoint:
what no listener handles is acknowledged; Slack's notices about the app itself (rate limits,
uninstall, revoked tokens) are recorded and acted on; and a request that queues work acts
once under Slack's retries and double clicks, with bad values refused at the ack."""

from __future__ import annotations

import copy
import json
import threading

import pytest
from typer.testing import CliRunner

from aitl.app import web as web_module
from aitl.app.cli import app as cli
from aitl.core.servers import serve_in_thread
from bot import actions
from bot.exceptions import SlackAppInactive
from sandboxes.slack.state import (
    AGENT_ALICE,
    SUPPORT_CHANNEL,
    encode_form,
    encode_interactivity,
)
from tests.support.processes import environment
from tests.support.sandboxes import run_worker, ticket_thread
from tests.support.slack_app import (  # noqa: F401 (the slack and settings fixtures)
    ADMIN,
    admin_settings_fixture,
    click,
    post,
    slack_fixture,
    wait_for,
)

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
JSON = {"Content-Type": "application/json"}


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def send_event(slack, web, event: dict, **headers):
    body = json.dumps(slack.event_callback(event)).encode()
    return post(slack, web, body, **JSON, **headers)


def jobs(db, task: str) -> list:
    return rows(db, "SELECT args FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", task)


def test_a_rate_limit_notice_is_recorded_and_shown_to_admins(services, slack, web, kb_db):
    notice = {"token": slack.verification_token, "type": "app_rate_limited"}
    notice |= {"team_id": slack.team_id, "minute_rate_limited": 1518467820, "api_app_id": "A1"}
    assert post(slack, web, json.dumps(notice).encode(), **JSON).status_code == 200
    [(kind, detail)] = rows(kb_db, "SELECT kind, detail FROM slack_installation_events")
    assert (kind, detail) == ("app_rate_limited", {"minute_rate_limited": 1518467820})
    post(slack, web, json.dumps(slack.app_home_opened(ADMIN)).encode(), **JSON)
    wait_for(lambda: slack.home(ADMIN))
    assert "rate-limited the app's events 1 time in 7 days" in json.dumps(slack.home(ADMIN))


def test_an_uninstalled_app_stops_posting_until_slack_reaches_it_again(
    services, slack, zendesk, web, kb_db
):
    _, _, card = ticket_thread(services, zendesk, slack, web, "Hub offline", "It drops off.")
    click(slack, web, AGENT_ALICE, card, "aitl.prefer.A")  # its card refresh is queued
    assert send_event(slack, web, {"type": "app_uninstalled"}).status_code == 200
    assert not services.slack.installation.status().active
    # the answer is kept, but the refresh cannot post: the job ends at once with the reason
    # instead of retrying for hours
    assert rows(kb_db, "SELECT kind, value FROM feedback_events") == [("preference", "A")]
    before = len(slack.calls("chat.update"))
    services.slack.installation.forget()  # the web app's process wrote it, not this one
    run_worker(services)
    refresh = "SELECT status FROM procrastinate_jobs WHERE task_name = 'bot:refresh_card'"
    assert rows(kb_db, refresh) == [("failed",)], "failed for good, not waiting for a retry"
    assert len(slack.calls("chat.update")) == before, "nothing reached Slack"
    with pytest.raises(SlackAppInactive):
        services.slack.client.chat_postMessage(channel=SUPPORT_CHANNEL, text="x")
    # any request from Slack proves the app is installed again
    post(slack, web, json.dumps(slack.app_home_opened(ADMIN)).encode(), **JSON)
    assert services.slack.installation.status().changed == "reinstalled"
    services.slack.installation.forget()
    services.slack.client.chat_postMessage(channel=SUPPORT_CHANNEL, text="back")


def test_only_a_revoked_bot_token_stops_posting(services, slack, web, kb_db):
    users_only = {"type": "tokens_revoked", "tokens": {"oauth": [AGENT_ALICE], "bot": []}}
    assert send_event(slack, web, users_only).status_code == 200
    assert services.slack.installation.status().active
    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [slack.bot_user_id]}}
    assert send_event(slack, web, revoked).status_code == 200
    assert services.slack.installation.status().changed == "tokens_revoked"
    assert not services.slack.installation.status().active


def test_aitl_slack_status_checks_the_token_and_brings_the_app_back(
    services, slack, web, kb_db, settings
):
    send_event(slack, web, {"type": "app_uninstalled"})
    assert not services.slack.installation.status().active
    runner = CliRunner()
    found = runner.invoke(cli, ["slack", "status"], env=environment(settings))
    assert found.exit_code == 0, found.output
    assert "posting: on" in found.output and "last change: reinstalled" in found.output
    assert services.slack.installation.status().changed == "reinstalled"
    slack.fail("auth.test", status=500, times=10)  # the token cannot be checked: exit 1
    failed = runner.invoke(cli, ["slack", "status"], env=environment(settings))
    assert failed.exit_code == 1 and "does not work" in failed.output


def test_a_retried_promote_queues_one_change_and_a_stale_one_is_refused(
    services, slack, web, kb_db
):
    from flywheel import store as flywheel_store

    with kb_db.connection() as conn:
        for version in ("r8", "r9"):
            flywheel_store.add_model(
                conn, kind="reranker", version=version, path=f"/m/{version}", status="challenger"
            )
    post(slack, web, json.dumps(slack.app_home_opened(ADMIN)).encode(), **JSON)
    wait_for(lambda: "Promote" in json.dumps(slack.home(ADMIN) or {}))
    home_id = slack.home(ADMIN)["id"]
    promote = slack.block_actions(
        ADMIN, None, None, "aitl.admin.promote", view=home_id, value="reranker:r9"
    )
    body = encode_interactivity(promote)
    assert post(slack, web, body).status_code == 200
    assert post(slack, web, body, **RETRY).status_code == 200
    assert [a for (a,) in jobs(kb_db, "flywheel:promote")] == [
        {"kind": "reranker", "version": "r9", "by": ADMIN}
    ]
    # a value no button of ours carries, and a model that is not a challenger: told, not queued
    for n, (value, why) in enumerate(
        (("reranker:", "names no model"), ("retriever:r9", "no longer"))
    ):
        bad = copy.deepcopy(promote)  # a crafted click: Home shows no such button now
        bad["actions"][0] |= {"value": value, "action_ts": f"{n}.5"}
        assert post(slack, web, encode_interactivity(bad)).status_code == 200
        wait_for(lambda why=why: any(why in m["text"] for m in slack.messages(ADMIN)))
    assert len(jobs(kb_db, "flywheel:promote")) == 1


def test_a_retried_slash_command_drafts_once(services, slack, web, kb_db):
    command = slack.slash_command(AGENT_ALICE, SUPPORT_CHANNEL, "/aitl", "ask how do I reset?")
    body = encode_form(command)
    first, retry = post(slack, web, body), post(slack, web, body, **RETRY)
    assert (first.status_code, retry.status_code) == (200, 200)
    assert "Drafting" in retry.json()["text"]
    assert len(jobs(kb_db, "bot:ask")) == 1


def test_a_search_before_the_models_are_loaded_answers_in_time_with_no_options(
    settings, kb_db, slack, monkeypatch
):
    """Slack drops an options answer after 3 s: while the process is still loading its models
    the search answers with nothing (the agent types again) instead of never."""
    loaded = threading.Event()

    def slow_warm(services) -> None:
        services.ready.clear()
        loaded.wait(60)
        services.ready.set()

    monkeypatch.setattr(web_module, "warm", slow_warm)
    with serve_in_thread(web_module.create_app(settings, database=kb_db)) as server:
        suggestion = {
            "type": "block_suggestion",
            "user": {"id": AGENT_ALICE},
            "action_id": actions.KB_SEARCH,
            "block_id": actions.ARTICLE,
            "value": "hub offline",
            "team": {"id": slack.team_id},
            "view": {"id": "V1", "type": "modal", "callback_id": actions.MISSING_VIEW},
        }
        body = encode_interactivity(suggestion)
        cold = post(slack, server, body)
        loaded.set()
        warm = post(slack, server, body)
    assert (cold.status_code, cold.json()) == (200, {"options": []})
    assert warm.status_code == 200 and len(warm.json()["options"]) >= 1
