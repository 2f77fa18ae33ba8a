"""Who may do what, on the real Bolt app behind our endpoint: each request below is signed as
Slack signs it, so only the user in it differs. Outsiders cannot annotate (clicks, modal
submissions, the slash command); agents cannot configure, promote or roll back. Each refused
request is paired with the same request from someone allowed, which does take effect."""

from __future__ import annotations

import copy
import json

from bot import actions
from bot.ask import COMMAND
from bot.home_views import ROLL_BACK
from flywheel import store as flywheel_store
from sandboxes.slack.state import (
    AGENT_ALICE,
    AGENT_BOB,
    SUPPORT_CHANNEL,
    encode_form,
    encode_interactivity,
)
from tests.support.sandboxes import ticket_thread
from tests.support.slack_app import (  # noqa: F401 (the slack and settings fixtures)
    ADMIN,
    OUTSIDER,
    admin_settings_fixture,
    click,
    opened,
    post,
    relevance_block,
    select,
    slack_fixture,
    text_input,
    wait_for,
)


def rows(db, sql):
    with db.connection() as conn:
        return conn.execute(sql).fetchall()


def events(db) -> list[tuple]:
    return rows(db, "SELECT kind, value, agent_id FROM feedback_events ORDER BY id")


def as_user(payload: dict, user: str) -> dict:
    """The same payload with another user in it (Slack signs whatever it delivers)."""
    forged = copy.deepcopy(payload)
    forged["user"] = {**forged["user"], "id": user}
    return forged


def submission(slack, user: str, values: dict) -> dict:
    return slack.view_submission(user, opened(slack, user)["id"], values)


def test_only_agents_annotate_whatever_the_request(services, slack, zendesk, web, kb_db):
    _, _, card = ticket_thread(
        services, zendesk, slack, web, "Hub offline", "My Lumen hub drops off the wifi nightly."
    )
    block_id, _ = relevance_block(card)
    assert click(slack, web, OUTSIDER, card, actions.RELEVANT, block_id=block_id).status_code == 200
    assert events(kb_db) == []

    # modals an agent opened, delivered as if an outsider had submitted them
    click(slack, web, AGENT_ALICE, card, "aitl.adopt.as_is.A")
    reason = {actions.REASON: select(actions.REASON, "saved_time")}
    adoption = submission(slack, AGENT_ALICE, reason)
    assert post(slack, web, encode_interactivity(as_user(adoption, OUTSIDER))).status_code == 200
    click(slack, web, AGENT_BOB, card, actions.MISSING)
    missing = submission(slack, AGENT_BOB, {actions.NOTE: text_input(actions.NOTE, "Reset steps")})
    assert post(slack, web, encode_interactivity(as_user(missing, OUTSIDER))).status_code == 200
    command = slack.slash_command(OUTSIDER, SUPPORT_CHANNEL, COMMAND, "how do I reset the hub?")
    post(slack, web, encode_form(command))
    # Alice's own click stands (an adoption is recorded on the click); nothing of the outsider
    assert events(kb_db) == [("adoption", "as_is", AGENT_ALICE)], "nothing an outsider sent"
    assert rows(kb_db, "SELECT count(*) FROM rag_draft_sets") == [(1,)], "no draft for them"
    notes = [n["text"] for n in slack.ephemeral(user=OUTSIDER)]
    assert notes and all("not in the agents group" in n for n in notes)

    # the same submissions from the agents who opened them are recorded
    assert post(slack, web, encode_interactivity(adoption)).status_code == 200
    assert post(slack, web, encode_interactivity(missing)).status_code == 200
    assert {(e[0], e[2]) for e in events(kb_db)} == {
        ("adoption", AGENT_ALICE),
        ("missing_knowledge", AGENT_BOB),
    }


def open_home(slack, web, user: str) -> dict:
    body = json.dumps(slack.app_home_opened(user)).encode()
    assert post(slack, web, body, **{"Content-Type": "application/json"}).status_code == 200
    wait_for(lambda: slack.home(user))
    return slack.home(user)


def test_only_admins_configure_promote_and_roll_back(services, slack, web, kb_db):
    with kb_db.connection() as conn:
        for version, status in (("r1", "retired"), ("r2", "champion")):
            flywheel_store.add_model(
                conn,
                kind="reranker",
                version=version,
                path=f"/models/reranker/{version}",
                status=status,
                metrics={"precision@8": 0.3},
            )
    home = open_home(slack, web, ADMIN)
    wait_for(lambda: "Roll back" in json.dumps(slack.home(ADMIN)))
    home = slack.home(ADMIN)

    # Roll back, clicked on the admin's Home tab but delivered with an agent in it
    rollback = slack.block_actions(ADMIN, None, None, ROLL_BACK, view=home["id"])
    assert post(slack, web, encode_interactivity(as_user(rollback, AGENT_BOB))).status_code == 200
    # the schedule modal the admin opened, submitted in an agent's name
    opening = slack.block_actions(ADMIN, None, None, actions.ADMIN_SCHEDULE, view=home["id"])
    assert post(slack, web, encode_interactivity(opening)).status_code == 200
    schedule = submission(
        slack,
        ADMIN,
        {
            actions.RETRAIN_CRON: text_input(actions.RETRAIN_CRON, "30 1 * * 2"),
            actions.DIGEST_CRON: text_input(actions.DIGEST_CRON, "0 8 * * 1"),
        },
    )
    assert post(slack, web, encode_interactivity(as_user(schedule, AGENT_BOB))).status_code == 200
    queued = "SELECT args FROM procrastinate_jobs WHERE task_name = 'flywheel:rollback'"
    assert rows(kb_db, queued) == []
    assert rows(kb_db, "SELECT name FROM admin_settings") == []
    assert slack.open_views(AGENT_BOB) == []

    # from the admin, both take effect
    assert post(slack, web, encode_interactivity(rollback)).status_code == 200
    assert rows(kb_db, queued) == [({"kind": "reranker", "version": "r2", "by": ADMIN},)]
    assert post(slack, web, encode_interactivity(schedule)).status_code == 200
    assert rows(kb_db, "SELECT name, updated_by FROM admin_settings ORDER BY name") == [
        ("digest_cron", ADMIN),
        ("retrain_cron", ADMIN),
    ]
