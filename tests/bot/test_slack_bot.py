"""The Slack bot end to end: a Zendesk ticket (local Zendesk sandbox) becomes a thread on the
local Slack API server; signed clicks go through our web app into the real Bolt app and the
events table; the worker updates the card and writes adopted drafts back to Zendesk."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from aitl.app.web import create_app
from aitl.core.servers import serve_in_thread
from bot import actions
from bot.access import NOT_AN_ADMIN
from connectors import setup
from sandboxes.slack.state import (
    AGENT_ALICE,
    AGENT_BOB,
    AGENTS_GROUP,
    SUPPORT_CHANNEL,
    encode_form,
    encode_interactivity,
)
from tests.support.sandboxes import (
    run_worker,
    ticket_thread,
)
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
    submit,
    text_input,
    wait_for,
)

FORM = "application/x-www-form-urlencoded"


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def events(db):
    return rows(
        db,
        "SELECT kind, value, agent_id, draft_id, chunk_ids, rationale, subject, supersedes"
        " FROM feedback_events ORDER BY id",
    )


def card_action_ids(message) -> set[str]:
    found = set()
    for block in message.get("blocks", []):
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("action_id"):
                found.add(element["action_id"])
    return found


def chosen_buttons(message) -> set[str]:
    return {
        e["action_id"]
        for b in message.get("blocks", [])
        for e in b.get("elements", [])
        if e.get("style") == "primary"
    }


@pytest.fixture
def thread(services, zendesk, slack, web):
    return ticket_thread(
        services,
        zendesk,
        slack,
        web,
        "Hub keeps going offline",
        "My Lumen hub drops off the wifi every night. How do I reset it?",
    )


def test_a_tickets_drafts_appear_as_a_thread_with_every_button(services, thread, slack, kb_db):
    ticket, parent, card = thread
    assert f"#{ticket['id']} Hub keeps going offline" in json.dumps(parent["blocks"])
    assert "high" in json.dumps(parent["blocks"]) and "Jane" in json.dumps(parent["blocks"])
    assert {
        "aitl.prefer.A",
        "aitl.prefer.B",
        "aitl.prefer.tie",
        "aitl.prefer.both_bad",
        "aitl.adopt.as_is.A",
        "aitl.adopt.edited.B",
        "aitl.adopt.not_used",
        actions.RELEVANT,
        actions.NOT_RELEVANT,
        actions.MISSING,
    } <= card_action_ids(card)
    assert "*Draft A*" in json.dumps(card["blocks"]) and "*Draft B*" in json.dumps(card["blocks"])
    assert rows(kb_db, "SELECT status FROM zendesk_draft_requests") == [("delivered",)]
    shown = rows(kb_db, "SELECT shown_at IS NOT NULL, card_ts FROM slack_cards")
    assert shown == [(True, card["ts"])]

    # delivering again (a retried job) posts nothing new
    posts = len(slack.calls("chat.postMessage"))
    ready_card = rows(kb_db, "SELECT id FROM slack_cards")[0][0]
    assert services.slack.cards.post_ticket(_card(kb_db, ready_card))
    assert len(slack.calls("chat.postMessage")) == posts


def _card(db, card_id):
    from bot import store

    with db.connection() as conn:
        return store.card(conn, card_id)


def test_clicks_store_one_event_each_and_the_card_shows_the_choice(services, thread, slack, web):
    _, _, card = thread
    db = services.zendesk.db
    for _ in range(2):  # a double click
        assert click(slack, web, AGENT_ALICE, card, "aitl.prefer.A").status_code == 200
    block_id, value = relevance_block(card)
    response = click(slack, web, AGENT_ALICE, card, actions.RELEVANT, block_id=block_id)
    assert response.status_code == 200
    assert [(e[0], e[1]) for e in events(db)] == [("preference", "A"), ("relevance", "relevant")]
    chunk = int(value.split(":")[1])
    assert events(db)[1][4] == [chunk] and events(db)[1][6] == f"chunk:{chunk}"
    draft_a = rows(db, "SELECT id FROM rag_drafts WHERE label = 'A'")[0][0]
    assert events(db)[0][3] == draft_a

    run_worker(services)
    updated = slack.message(SUPPORT_CHANNEL, card["ts"])
    assert {"aitl.prefer.A", actions.RELEVANT} <= chosen_buttons(updated)
    assert f"<@{AGENT_ALICE}>: A is better" in json.dumps(updated["blocks"])

    # a change of mind supersedes; both clicks stay
    click(slack, web, AGENT_ALICE, card, "aitl.prefer.B")
    run_worker(services)
    prefs = [e for e in events(db) if e[0] == "preference"]
    assert [p[1] for p in prefs] == ["A", "B"] and prefs[1][7] is not None
    assert "aitl.prefer.B" in chosen_buttons(slack.message(SUPPORT_CHANNEL, card["ts"]))
    assert "aitl.prefer.A" not in chosen_buttons(slack.message(SUPPORT_CHANNEL, card["ts"]))


def test_a_slack_retry_of_the_same_request_is_one_event(services, thread, slack, web):
    _, _, card = thread
    payload = slack.block_actions(AGENT_BOB, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.tie")
    body = encode_interactivity(payload)
    first = post(slack, web, body)
    retry = post(slack, web, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"})
    assert (first.status_code, retry.status_code) == (200, 200)
    assert [(e[0], e[1], e[2]) for e in events(services.zendesk.db)] == [
        ("preference", "tie", AGENT_BOB)
    ]


def test_used_as_is_asks_why_writes_back_and_asks_what_was_missing(
    services, thread, slack, web, zendesk
):
    ticket, _, card = thread
    db = services.zendesk.db
    assert click(slack, web, AGENT_ALICE, card, "aitl.adopt.as_is.A").status_code == 200
    modal = opened(slack, AGENT_ALICE)
    assert modal["callback_id"] == actions.ADOPTION_VIEW
    [(kind, value, agent, _, _, rationale, _, supersedes)] = events(db)
    assert (kind, value, agent, rationale, supersedes) == (
        "adoption",
        "as_is",
        AGENT_ALICE,
        {"label": "A"},
        None,
    ), "the adoption is stored on the click, before the agent says why"

    values = {
        actions.REASON: select(actions.REASON, "saved_time"),
        actions.DETAILS: text_input(actions.DETAILS, "Call me on +1 415 555 0100 if needed"),
        actions.POST: {
            actions.POST: {"type": "checkboxes", "selected_options": [{"value": "post"}]}
        },
    }
    response = submit(slack, web, AGENT_ALICE, values)
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "update"
    assert answer["view"]["title"]["text"] == "Anything we missed?"
    assert f"Posting it to ticket #{ticket['id']}" in json.dumps(answer["view"])

    clicked, (kind, value, agent, draft_id, _, rationale, _, supersedes) = events(db)
    assert (kind, value, agent) == ("adoption", "as_is", AGENT_ALICE)
    assert supersedes is not None and draft_id == clicked[3], "the reasons supersede the click"
    assert rationale["reason"] == "saved_time" and rationale["label"] == "A"
    assert "555 0100" not in rationale["details"], "free text is redacted before it is kept"

    run_worker(services)
    draft_a = rows(db, "SELECT text FROM rag_drafts WHERE id = %s", draft_id)[0][0]
    notes = [c for c in zendesk.comments(ticket["id"]) if not c["public"]]
    assert len(notes) == 1 and notes[0]["body"].strip() == draft_a.strip()
    assert "used as is" in json.dumps(slack.message(SUPPORT_CHANNEL, card["ts"])["blocks"])


def test_edited_reply_is_kept_for_training_and_posted(services, thread, slack, web, zendesk):
    ticket, _, card = thread
    click(slack, web, AGENT_BOB, card, "aitl.adopt.edited.B")
    modal = opened(slack, AGENT_BOB)
    prefilled = next(b for b in modal["blocks"] if b.get("block_id") == actions.EDITED)
    assert prefilled["element"]["initial_value"], "the draft is there to edit"
    values = {
        actions.REASON: select(actions.REASON, "tone"),
        actions.EDITED: text_input(actions.EDITED, "Hi Jane, please hold the reset button."),
        actions.POST: {
            actions.POST: {"type": "checkboxes", "selected_options": [{"value": "post"}]}
        },
    }
    assert submit(slack, web, AGENT_BOB, values).json()["response_action"] == "update"
    clicked, event = events(services.zendesk.db)
    assert clicked[1] == "edited" and "edited_reply" not in clicked[5]
    assert event[1] == "edited" and event[5]["edited_reply"].startswith("Hi Jane")
    run_worker(services)
    bodies = [c["body"] for c in zendesk.comments(ticket["id"]) if not c["public"]]
    assert bodies == ["Hi Jane, please hold the reset button."]


def test_a_rationale_without_a_reason_is_sent_back_then_not_used_is_stored(
    services, thread, slack, web
):
    _, _, card = thread
    click(slack, web, AGENT_ALICE, card, "aitl.adopt.not_used")
    response = submit(slack, web, AGENT_ALICE, {actions.REASON: {actions.REASON: {}}})
    assert response.json() == {
        "response_action": "errors",
        "errors": {actions.REASON: "Pick the main reason."},
    }
    [clicked] = events(services.zendesk.db)  # the click, and nothing of the refused form
    assert clicked[:4] == ("adoption", "not_used", AGENT_ALICE, None) and clicked[5] == {}
    fixed = submit(slack, web, AGENT_ALICE, {actions.REASON: select(actions.REASON, "generic")})
    assert fixed.json()["response_action"] == "update"
    _, event = events(services.zendesk.db)
    assert event[:4] == ("adoption", "not_used", AGENT_ALICE, None)
    assert event[5] == {"reason": "generic", "post_to_ticket": False}
    block_id, _ = relevance_block(card)
    click(slack, web, AGENT_ALICE, card, actions.NOT_RELEVANT, block_id=block_id)
    assert events(services.zendesk.db)[-1][:2] == ("relevance", "not_relevant")
    run_worker(services)
    assert rows(services.zendesk.db, "SELECT count(*) FROM zendesk_writebacks") == [(0,)]


def test_closing_the_adoption_modal_keeps_the_adoption_and_counts_the_close(
    services, thread, slack, web
):
    """Agents close modals: the adoption clicked stands (without reasons), Slack's view_closed
    is acknowledged, its retry counts once, and the close is kept for the digest."""
    _, _, card = thread
    db = services.zendesk.db
    click(slack, web, AGENT_ALICE, card, "aitl.adopt.edited.B")
    modal = opened(slack, AGENT_ALICE)
    body = encode_interactivity(slack.view_closed(AGENT_ALICE, modal["id"]))
    first = post(slack, web, body)
    retry = post(slack, web, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"})
    assert (first.status_code, retry.status_code) == (200, 200)
    [(kind, value, agent, draft_id, _, rationale, _, _)] = events(db)
    assert (kind, value, agent, rationale) == ("adoption", "edited", AGENT_ALICE, {"label": "B"})
    assert draft_id == rows(db, "SELECT id FROM rag_drafts WHERE label = 'B'")[0][0]
    closes = rows(db, "SELECT modal, agent_id, view_id FROM feedback_dismissals")
    assert closes == [("adoption", AGENT_ALICE, modal["id"])]
    run_worker(services)
    assert "edited" in json.dumps(slack.message(SUPPORT_CHANNEL, card["ts"])["blocks"])


def test_the_adoption_clicked_again_keeps_the_reasons_given(services, thread, slack, web):
    _, _, card = thread
    db = services.zendesk.db
    click(slack, web, AGENT_BOB, card, "aitl.adopt.as_is.A")
    submit(slack, web, AGENT_BOB, {actions.REASON: select(actions.REASON, "saved_time")})
    slack.close_view(AGENT_BOB, clear=True)
    click(slack, web, AGENT_BOB, card, "aitl.adopt.as_is.A")  # the same choice again
    assert [e[5].get("reason") for e in events(db)] == [None, "saved_time"], "nothing new"
    click(slack, web, AGENT_BOB, card, "aitl.adopt.not_used")  # a changed mind is stored
    assert [(e[1], e[5]) for e in events(db)][-1] == ("not_used", {})


def test_missing_knowledge_search_then_pick_an_article(services, thread, slack, web):
    _, _, card = thread
    db = services.zendesk.db
    click(slack, web, AGENT_ALICE, card, actions.MISSING)
    modal = opened(slack, AGENT_ALICE)
    assert modal["callback_id"] == actions.MISSING_VIEW
    suggestion = slack.block_suggestion(
        AGENT_ALICE, modal["id"], actions.KB_SEARCH, actions.ARTICLE, "change wifi network"
    )
    options = post(slack, web, encode_interactivity(suggestion)).json()["options"]
    assert 1 <= len(options) <= 10
    assert any("wi" in o["text"]["text"].lower() for o in options[:3]), options[:3]
    assert all(o["value"].startswith("chunk:") for o in options)

    empty = submit(slack, web, AGENT_ALICE, {})
    assert empty.json()["response_action"] == "errors" and events(db) == []
    bad_url = {actions.URL: {actions.URL: {"type": "url_text_input", "value": "ftp://x"}}}
    assert submit(slack, web, AGENT_ALICE, bad_url).json()["errors"] == {
        actions.URL: "Give a web address starting with http:// or https://"
    }

    picked = {
        actions.ARTICLE: {
            actions.KB_SEARCH: {"type": "external_select", "selected_option": options[0]}
        },
        actions.NOTE: text_input(actions.NOTE, "The router change steps"),
    }
    assert submit(slack, web, AGENT_ALICE, picked).status_code == 200
    [(kind, value, _, _, chunk_ids, rationale, subject, _)] = events(db)
    assert (kind, value) == ("missing_knowledge", "article")
    assert chunk_ids == [int(options[0]["value"].removeprefix("chunk:"))]
    assert rationale == {"note": "The router change steps"} and subject.startswith("view:")


def test_someone_outside_the_agents_group_is_told_and_nothing_is_stored(
    services, thread, slack, web
):
    _, _, card = thread
    for action in ("aitl.prefer.A", "aitl.adopt.as_is.A", actions.MISSING):
        assert click(slack, web, OUTSIDER, card, action).status_code == 200
    assert events(services.zendesk.db) == []
    assert slack.open_views(OUTSIDER) == []
    notes = slack.ephemeral(user=OUTSIDER)
    assert len(notes) == 3 and all("not in the agents group" in n["text"] for n in notes)


def test_forged_stale_and_malformed_requests_are_refused_and_store_nothing(
    services, thread, slack, web
):
    _, _, card = thread
    body = encode_interactivity(
        slack.block_actions(AGENT_ALICE, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.A")
    )
    url = f"{web.url}/slack/events"
    forged = {**slack.signed_headers(body), "X-Slack-Signature": "v0=" + "0" * 64}
    stale = slack.signed_headers(body, timestamp=int(time.time()) - 600)
    cases = [
        (forged, body, 401, "signature"),
        (stale, body, 401, "5 minutes"),
        ({"Content-Type": FORM}, body, 401, "missing"),
        (slack.signed_headers(b"payload=%7B"), b"payload=%7B", 400, "JSON"),
        (
            {**slack.signed_headers(b"{}"), "Content-Type": "text/plain"},
            b"{}",
            415,
            "text/plain",
        ),
        (slack.signed_headers(b"x" * 1_000_001), b"x" * 1_000_001, 413, "bytes"),
    ]
    for headers, content, status, reason in cases:
        response = httpx.post(url, content=content, headers=headers, timeout=10)
        assert response.status_code == status, (reason, response.text)
        assert reason in response.json()["error"]
    assert events(services.zendesk.db) == []


def test_posting_retries_after_rate_limits_and_posts_once(services, kb_db, slack, web, zendesk):
    slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    ticket_thread(services, zendesk, slack, web, "Refund", "Where is my refund?")
    assert len([m for m in slack.messages(SUPPORT_CHANNEL)]) == 1
    statuses = [c.status for c in slack.calls("chat.postMessage")]
    assert statuses == [429, 200, 200], "retried inside the call after Retry-After"

    # past the in-call budget the job fails, stays queued, and posts once when retried
    slack.fail("chat.postMessage", status=429, times=3, retry_after=0)
    ticket = zendesk.create_ticket("Second", "The hub LED blinks red.", "sam@example.com")
    zendesk.deliver_pending()
    run_worker(services)
    assert not [m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"]]
    with kb_db.connection() as conn:
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    run_worker(services)
    parents = [m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"]]
    assert len(parents) == 1
    assert len(slack.replies(SUPPORT_CHANNEL, parents[0]["ts"])) == 1


def test_ask_command_gives_private_drafts_and_records_clicks(services, slack, web):
    db = services.zendesk.db
    form = slack.slash_command(AGENT_ALICE, SUPPORT_CHANNEL, "/aitl", "ask how do I reset my hub?")
    response = post(slack, web, encode_form(form))
    assert response.status_code == 200 and "Drafting" in response.json()["text"]
    empty = slack.slash_command(AGENT_ALICE, SUPPORT_CHANNEL, "/aitl", "")
    assert "/aitl ask" in post(slack, web, encode_form(empty)).json()["text"]

    run_worker(services)
    [shown] = slack.ephemeral(user=AGENT_ALICE)
    assert "aitl.prefer.A" in card_action_ids(shown)
    assert "how do I reset my hub" in json.dumps(shown["blocks"])
    assert slack.messages(SUPPORT_CHANNEL) == [], "nobody else sees it"

    payload = slack.block_actions(
        AGENT_ALICE, SUPPORT_CHANNEL, shown["ts"], "aitl.prefer.B", is_ephemeral=True
    )
    assert post(slack, web, encode_interactivity(payload)).status_code == 200
    [event] = events(db)
    assert event[:3] == ("preference", "B", AGENT_ALICE)
    ticket_ref = rows(db, "SELECT ticket_ref FROM feedback_events")[0][0]
    assert ticket_ref.startswith("ask:")
    run_worker(services)
    [refreshed] = slack.ephemeral(user=AGENT_ALICE)
    assert "aitl.prefer.B" in chosen_buttons(refreshed)


def test_app_home_for_an_agent_and_an_admin_who_edits_the_schedule(services, slack, web, kb_db):
    for user in (AGENT_BOB, ADMIN):
        body = json.dumps(slack.app_home_opened(user)).encode()
        assert post(slack, web, body, **{"Content-Type": "application/json"}).status_code == 200
    wait_for(lambda: slack.home(AGENT_BOB) and slack.home(ADMIN))
    agent_home, admin_home = json.dumps(slack.home(AGENT_BOB)), json.dumps(slack.home(ADMIN))
    assert "Tickets you annotated" in agent_home and "Admin" not in agent_home
    for expected in ("Zendesk", "Routing", f"<!subteam^{AGENTS_GROUP}>", "Retrain", "Models"):
        assert expected in admin_home

    home = slack.home(ADMIN)
    payload = slack.block_actions(ADMIN, None, None, actions.ADMIN_SCHEDULE, view=home["id"])
    assert post(slack, web, encode_interactivity(payload)).status_code == 200
    bad = {actions.RETRAIN_CRON: text_input(actions.RETRAIN_CRON, "mondays")}
    bad[actions.DIGEST_CRON] = text_input(actions.DIGEST_CRON, "0 8 * * 1")
    refused = submit(slack, web, ADMIN, bad).json()
    assert refused["response_action"] == "errors" and actions.RETRAIN_CRON in refused["errors"]
    crafted = {**bad, actions.ADMIN_NOTES: select(actions.ADMIN_NOTES, "hourly")}
    crafted[actions.RETRAIN_CRON] = text_input(actions.RETRAIN_CRON, "30 1 * * 2")
    refused = submit(slack, web, ADMIN, crafted).json()
    assert refused["response_action"] == "errors" and actions.ADMIN_NOTES in refused["errors"]
    assert rows(kb_db, "SELECT name FROM admin_settings") == [], "nothing saved from a refusal"
    good = {**crafted, actions.ADMIN_NOTES: select(actions.ADMIN_NOTES, "failures")}
    assert submit(slack, web, ADMIN, good).status_code == 200
    saved = rows(kb_db, "SELECT name, value, updated_by FROM admin_settings ORDER BY name")
    assert saved == [
        ("digest_cron", "0 8 * * 1", ADMIN),
        ("flywheel_admin_notes", "failures", ADMIN),
        ("retrain_cron", "30 1 * * 2", ADMIN),
    ]
    wait_for(lambda: "30 1 * * 2" in json.dumps(slack.home(ADMIN)))
    assert "hears, by DM, of: failures only" in json.dumps(slack.home(ADMIN))

    # an agent cannot open the admin modals, even with a crafted click
    crafted = slack.block_actions(AGENT_BOB, None, None, actions.ADMIN_ROUTING, view=home["id"])
    assert post(slack, web, encode_interactivity(crafted)).status_code == 200
    assert slack.open_views(AGENT_BOB) == []


def test_without_slack_settings_the_endpoint_says_so(kb_settings, kb_db):
    with serve_in_thread(create_app(kb_settings, database=kb_db)) as server:
        response = httpx.post(f"{server.url}/slack/events", content=b"{}")
    assert response.status_code == 503 and "not configured" in response.json()["error"]


def test_routing_saved_in_app_home_sends_the_next_ticket_to_its_channel(
    services, slack, web, zendesk, kb_db
):
    slack.add_channel("C0VIP", "vip-support", members=(AGENT_ALICE,))
    body = json.dumps(slack.app_home_opened(ADMIN)).encode()
    post(slack, web, body, **{"Content-Type": "application/json"})
    wait_for(lambda: slack.home(ADMIN))
    payload = slack.block_actions(
        ADMIN, None, None, actions.ADMIN_ROUTING, view=slack.home(ADMIN)["id"]
    )
    post(slack, web, encode_interactivity(payload))
    bad = {actions.ROUTES: text_input(actions.ROUTES, "vip C0VIP")}
    assert "line 1" in submit(slack, web, ADMIN, bad).json()["errors"][actions.ROUTES]
    good = {actions.ROUTES: text_input(actions.ROUTES, "tag vip C0VIP")}
    assert submit(slack, web, ADMIN, good).status_code == 200

    setup.connect(
        services.zendesk, email=zendesk.agent_email, api_token=zendesk.api_token, public_url=web.url
    )
    ticket = zendesk.create_ticket("VIP", "Hub offline again", "vip@example.com", tags=["vip"])
    zendesk.deliver_pending()
    run_worker(services)
    [parent] = slack.messages("C0VIP")
    assert f"#{ticket['id']}" in parent["text"]
    assert rows(kb_db, "SELECT channel FROM zendesk_draft_requests") == [("C0VIP",)]


def test_show_more_opens_a_long_draft_in_full(services, slack, web, kb_db):
    from bot import store as bot_store
    from tests.support.drafts import draft_set

    long_text = "Step. " * 400
    with kb_db.connection() as conn:
        set_id, drafts = draft_set(conn, texts=(long_text, "Short."))
        card = bot_store.ensure_card(
            conn,
            handoff_key="t",
            kind="ticket",
            draft_set_id=set_id,
            ticket_ref="zendesk:77",
            drafts=drafts,
            header={"number": 77, "subject": "Long"},
            channel=SUPPORT_CHANNEL,
        )
    assert services.slack.cards.post_ticket(card)
    message = {**slack.messages(SUPPORT_CHANNEL)[0], "channel": SUPPORT_CHANNEL}
    [reply] = slack.replies(SUPPORT_CHANNEL, message["ts"])
    assert "aitl.show_full.A" in card_action_ids(reply)
    assert "aitl.show_full.B" not in card_action_ids(reply), "a short draft is not folded"
    click(slack, web, AGENT_BOB, {**reply, "channel": SUPPORT_CHANNEL}, "aitl.show_full.A")
    modal = opened(slack, AGENT_BOB)
    shown = "".join(b["text"]["text"] for b in modal["blocks"] if b["type"] == "section")
    assert shown == long_text and modal["title"]["text"] == "Draft A"
    assert events(kb_db) == [], "reading a draft is not feedback"


def test_a_double_click_on_roll_back_rolls_back_once(services, slack, web, kb_db, settings):
    from flywheel import store as flywheel_store
    from tests.support.flywheel import run_flywheel_worker

    with kb_db.connection() as conn:
        for version in ("r6", "r7"):
            flywheel_store.add_model(
                conn, kind="reranker", version=version, path=f"/m/{version}", status="challenger"
            )
    for version in ("r6", "r7"):
        with kb_db.connection() as conn:
            flywheel_store.crown(conn, "reranker", version, "test")
    body = json.dumps(slack.app_home_opened(ADMIN)).encode()
    post(slack, web, body, **{"Content-Type": "application/json"})
    wait_for(lambda: "Roll back" in json.dumps(slack.home(ADMIN) or {}))
    assert "`r6` serves the next drafts again" in json.dumps(slack.home(ADMIN))
    home_id = slack.home(ADMIN)["id"]
    # both clicks land before Home is published again without the button
    clicks = [
        slack.block_actions(ADMIN, None, None, "aitl.admin.rollback", view=home_id)
        for _ in range(2)
    ]
    for payload in clicks:
        assert post(slack, web, encode_interactivity(payload)).status_code == 200
    assert "aitl.admin.rollback" not in json.dumps(slack.home(ADMIN)), "held back while queued"
    queued = rows(
        kb_db, "SELECT args FROM procrastinate_jobs WHERE task_name = 'flywheel:rollback'"
    )
    # the second click finds the same rollback waiting and queues nothing
    assert queued == [({"kind": "reranker", "version": "r7", "by": ADMIN},)]
    run_flywheel_worker(settings, kb_db, services.slack)
    statuses = rows(kb_db, "SELECT version, status FROM model_registry ORDER BY version")
    assert statuses == [("r6", "champion"), ("r7", "retired")], "not back to the shipped model"
    done = rows(
        kb_db, "SELECT status FROM procrastinate_jobs WHERE task_name = 'flywheel:rollback'"
    )
    assert done == [("succeeded",)]
    told = [m["text"] for m in slack.messages(ADMIN)]
    assert told == ["reranker `r7` rolled back: `r6` serves the next drafts."]
    home = json.dumps(slack.home(ADMIN), ensure_ascii=False)  # published as the last one told
    assert "hourglass" not in home, "neither change is shown as still on its way"
    assert "`r6` — champion" in home and "aitl.admin.rollback" in home


def test_an_admin_promotes_a_challenger_from_app_home(services, slack, web, kb_db, settings):
    from flywheel import store as flywheel_store
    from tests.support.flywheel import run_flywheel_worker

    with kb_db.connection() as conn:
        flywheel_store.add_model(
            conn,
            kind="reranker",
            version="r7",
            path="/models/reranker/r7",
            status="challenger",
            metrics={"precision@8": 0.31},
        )
    body = json.dumps(slack.app_home_opened(ADMIN)).encode()
    post(slack, web, body, **{"Content-Type": "application/json"})
    wait_for(lambda: "Promote" in json.dumps(slack.home(ADMIN) or {}))
    assert "precision@8 0.310" in json.dumps(slack.home(ADMIN))
    home_id = slack.home(ADMIN)["id"]
    for user in (AGENT_BOB, ADMIN):  # an agent's crafted click is refused
        payload = slack.block_actions(user, None, None, "aitl.admin.promote", view=home_id)
        assert post(slack, web, encode_interactivity(payload)).status_code == 200
    queued = rows(kb_db, "SELECT args FROM procrastinate_jobs WHERE task_name = 'flywheel:promote'")
    assert queued == [({"kind": "reranker", "version": "r7", "by": ADMIN},)]
    # until the worker is done, Home says the change is on its way and offers no second one
    waiting = json.dumps(slack.home(ADMIN), ensure_ascii=False)
    assert f"Promotion of the reranker `r7` queued, asked by <@{ADMIN}>" in waiting
    assert "aitl.admin.promote" not in waiting
    run_flywheel_worker(settings, kb_db, services.slack)
    assert rows(kb_db, "SELECT status, decision FROM model_registry") == [
        ("champion", f"promoted by <@{ADMIN}> in App Home")
    ]
    # the admin hears it is done, and Home shows it in the history with who asked
    assert [m["text"] for m in slack.messages(ADMIN)] == [
        "reranker `r7` is live: it serves the next drafts."
    ]
    done = json.dumps(slack.home(ADMIN), ensure_ascii=False)
    assert "queued" not in done and "aitl.admin.rollback" in done
    history = f"*reranker* `r7` promoted, replacing the shipped model — promoted by <@{ADMIN}>"
    assert f"{history} in App Home" in done


def test_an_admin_retrains_from_app_home_and_the_admins_hear_the_result(
    services, slack, web, kb_db, settings
):
    from tests.support.flywheel import run_flywheel_worker

    body = json.dumps(slack.app_home_opened(ADMIN)).encode()
    post(slack, web, body, **{"Content-Type": "application/json"})
    wait_for(lambda: "Retrain now" in json.dumps(slack.home(ADMIN) or {}))
    home_id = slack.home(ADMIN)["id"]
    for user in (AGENT_BOB, ADMIN):  # an agent's crafted click is refused
        payload = slack.block_actions(user, None, None, "aitl.admin.retrain", view=home_id)
        assert post(slack, web, encode_interactivity(payload)).status_code == 200
    queued = rows(kb_db, "SELECT args FROM procrastinate_jobs WHERE task_name = 'flywheel:cycle'")
    assert queued == [({"trigger": "app_home", "by": ADMIN},)]
    waiting = json.dumps(slack.home(ADMIN), ensure_ascii=False)
    assert f":hourglass: Retrain queued, asked by <@{ADMIN}>" in waiting
    assert "aitl.admin.retrain" not in waiting, "no second retrain while one waits"

    run_flywheel_worker(settings, kb_db, services.slack)
    [(status, trigger)] = rows(kb_db, "SELECT status, trigger FROM flywheel_runs")
    assert (status, trigger) == ("not_enough_data", "app_home")
    [note] = [m["text"] for m in slack.messages(ADMIN)]
    assert note.startswith(f"The retrain (run 1), asked by <@{ADMIN}>, trained nothing:")
    # the agent was told at once why the button did nothing, and hears nothing of the cycle
    assert [m["text"] for m in slack.messages(AGENT_BOB)] == [NOT_AN_ADMIN]
    done = json.dumps(slack.home(ADMIN), ensure_ascii=False)
    assert "hourglass" not in done and "aitl.admin.retrain" in done
