"""The bot's pure parts: Block Kit within Slack's limits, payload checks, routing lines, and
admin overrides validated like the settings they replace."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from slack_sdk.models.views import View

from aitl.core import overrides
from bot import actions
from bot.actions import ButtonValue
from bot.card_views import CardContent, card_blocks, fold, ticket_parent
from bot.exceptions import MalformedPayload, UnsupportedContentType
from bot.home_views import (
    AdminPanel,
    HomeContent,
    ModelEntry,
    home_view,
    parse_routes,
    people_modal,
    routing_modal,
    schedule_modal,
)
from bot.http import parse_request
from bot.modals_views import ModalContext, adoption_modal, full_draft_modal, missing_modal
from flywheel.events import StoredFeedback
from flywheel.jobs import PendingChange
from flywheel.store import AgentStats, ModelChange
from rag.store import ChunkRef, StoredDraft

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def draft(label: str, text: str) -> StoredDraft:
    return StoredDraft(1 if label == "A" else 2, 7, label, text, [10], {"variant": "DETAILED"})


def source(chunk_id: int) -> ChunkRef:
    return ChunkRef(chunk_id, chunk_id, f"Article <{chunk_id}> & more", None, "x", "Text " * 80)


def answer(kind: str, value: str, agent: str = "U1", subject: str = "", **rationale):
    return StoredFeedback(
        1,
        kind,
        value,
        "zendesk:5",
        7,
        [1, 2],
        None,
        [],
        subject,
        agent,
        rationale,
        NOW,
        NOW,
        None,
        "k",
    )


def content(drafts=None, sources=(), answers=(), kind="ticket") -> CardContent:
    drafts = drafts or [draft("A", "Short A."), draft("B", "Short B.")]
    return CardContent(7, kind, {"number": 5, "question": "How?"}, drafts, sources, answers)


def dicts(blocks):
    return [b.to_dict() for b in blocks]


def all_buttons(blocks):
    for block in blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("type") == "button":
                yield element


def test_a_card_with_long_drafts_and_many_sources_stays_within_slack_limits():
    long = "a&b " * 2000
    blocks, text = card_blocks(
        content([draft("A", long), draft("B", long)], [source(i) for i in range(1, 30)])
    )
    rendered = dicts(blocks)  # slack_sdk raises past any limit it knows
    assert len(rendered) <= 50 and text
    sections = [b["text"]["text"] for b in rendered if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    shows = [b for b in all_buttons(rendered) if b["action_id"].startswith(actions.SHOW_FULL)]
    assert [b["value"] for b in shows] == ["7:A", "7:B"], "both long drafts fold with show more"
    relevance = [b for b in all_buttons(rendered) if b["action_id"] == actions.RELEVANT]
    assert len(relevance) == 8, "at most eight sources get relevance buttons"
    assert all(
        len(b["value"]) <= 2000 and len(b["action_id"]) <= 255 for b in all_buttons(rendered)
    )


def test_the_card_shows_each_agents_standing_answer_and_marks_the_chosen_buttons():
    answers = [
        answer("preference", "B", "U1"),
        answer("adoption", "edited", "U1", label="B"),
        answer("relevance", "not_relevant", "U2", subject="chunk:3"),
    ]
    rendered = dicts(card_blocks(content(sources=[source(3)], answers=answers))[0])
    chosen = {b["action_id"] for b in all_buttons(rendered) if b.get("style") == "primary"}
    assert chosen == {"aitl.prefer.B", "aitl.adopt.edited.B", actions.NOT_RELEVANT}
    text = json.dumps(rendered)
    assert "<@U1>: B is better" in text and "<@U1>: B edited" in text
    assert "<@U2>: not relevant" in text
    assert "&lt;3&gt; &amp; more" in text, "titles are escaped for mrkdwn"
    assert "champion" not in text, "which model wrote which draft stays hidden"


def test_ticket_parent_links_the_ticket_and_mentions_the_assignee():
    blocks, text = ticket_parent(
        {
            "number": 42,
            "subject": "Hub offline",
            "url": "https://acme.zendesk.com/agent/tickets/42",
            "requester": "Jane",
            "priority": "high",
            "assignee_slack": "U7",
        }
    )
    rendered = json.dumps(dicts(blocks))
    assert "<https://acme.zendesk.com/agent/tickets/42|#42 Hub offline>" in rendered
    assert "<@U7>" in rendered and "high" in rendered and "Jane" in rendered
    assert "#42" in text


def test_fold_cuts_at_a_word_boundary():
    assert fold("short", 10) == ("short", False)
    cut, folded = fold("alpha beta gamma delta", 12)
    assert folded and cut == "alpha beta…"


def test_modals_render_within_limits_and_carry_their_context():
    context = ModalContext(7, "edited", "A", NOW.isoformat(), None, "ticket #5", True, True)
    view = adoption_modal(context, "x" * 2999).to_dict()
    assert ModalContext.decode(view["private_metadata"]) == context
    blocks = {b.get("block_id") for b in view["blocks"]}
    assert {actions.REASON, actions.DETAILS, actions.EDITED, actions.POST} <= blocks
    not_used = adoption_modal(ModalContext(7, "not_used"), None).to_dict()
    assert actions.EDITED not in {b.get("block_id") for b in not_used["blocks"]}
    assert actions.POST not in {b.get("block_id") for b in not_used["blocks"]}
    missing = missing_modal(ModalContext(7, after_adoption=True)).to_dict()
    assert missing["title"]["text"] == "Anything we missed?"
    select = missing["blocks"][1]["element"]
    assert select["type"] == "external_select" and select["action_id"] == actions.KB_SEARCH
    full = full_draft_modal("A", "<b>" * 5000, "ticket #5").to_dict()
    parts = [b["text"]["text"] for b in full["blocks"] if b["type"] == "section"]
    assert all(len(p) <= 3000 for p in parts)
    assert "".join(parts) == "&lt;b&gt;" * 5000, "no entity is cut in two"
    with pytest.raises(MalformedPayload):
        ModalContext.decode("{not json")


def panel(**changes) -> AdminPanel:
    base = dict(
        zendesk={"connection": "ok"},
        routes=[{"tag": "vip", "channel": "C9"}],
        route_problems=[],
        default_channel="C1",
        agents_group="S1",
        agents_channel=None,
        admins=["UADMIN"],
        admins_group=None,
        managers=["UM"],
        managers_group=None,
        digest_channel=None,
        retrain_cron="0 2 * * 1",
        digest_cron="0 8 * * 1",
        admin_notes="changes",
        next_retrain=NOW,
        next_digest=NOW,
        registry=[ModelEntry("retriever", "v2", "challenger", {"recall@75": 0.9})],
        cards={"ticket.shown": 3, "ticket.failed": 1},
        undelivered=[("zendesk:9", "not_in_channel: invite the AITL bot")],
    )
    return AdminPanel(**{**base, **changes})


def test_app_home_for_an_agent_and_for_an_admin():
    stats = AgentStats({"preference": 4, "adoption": 2}, 3, {"as_is": 1, "not_used": 1}, NOW)
    agent = json.dumps(home_view(HomeContent("U1", True, stats)).to_dict())
    assert "Tickets you annotated: *3*" in agent and "50%" in agent and "Admin" not in agent
    admin = json.dumps(home_view(HomeContent("UADMIN", True, stats, panel())).to_dict())
    for expected in ("tag vip C9", "<!subteam^S1>", "<@UM>", "not_in_channel", "Promote"):
        assert expected in admin
    outsider = json.dumps(home_view(HomeContent("U2", False, stats)).to_dict())
    assert "not in the agents group" in outsider
    for modal in (people_modal, routing_modal, schedule_modal):
        assert isinstance(modal(panel()), View) and modal(panel()).to_dict()["blocks"]


def test_the_schedule_shows_and_offers_which_retrains_every_admin_hears_of():
    stats = AgentStats({}, 0, {}, None)
    admin = json.dumps(home_view(HomeContent("UADMIN", True, stats, panel())).to_dict())
    assert "Every admin hears, by DM, of: a model going live, or a failure" in admin
    [notes] = [
        b for b in schedule_modal(panel()).to_dict()["blocks"] if b["block_id"] == "admin_notes"
    ]
    element = notes["element"]
    assert element["initial_option"]["value"] == "changes", "the current choice is selected"
    assert [o["value"] for o in element["options"]] == ["all", "changes", "failures", "none"]
    unknown = schedule_modal(panel(admin_notes="weekly")).to_dict()["blocks"][-1]["element"]
    assert "initial_option" not in unknown, "no choice is shown as made when none matches"


def test_model_buttons_ask_before_changing_what_every_agent_gets():
    registry = [
        ModelEntry("retriever", "v3", "challenger", {"recall@75": 0.9}),
        ModelEntry("reranker", "k2", "champion", replaces="k1"),
        ModelEntry("retriever", "v2", "champion"),
    ]
    stats = AgentStats({}, 0, {}, NOW)
    view = home_view(HomeContent("UADMIN", True, stats, panel(registry=registry))).to_dict()
    buttons = {
        element["value"]: element
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("value", "").startswith(("retriever:", "reranker:"))
    }
    promote = buttons["retriever:v3"]["confirm"]
    assert (
        promote["confirm"]["text"] == "Promote"
        and "embedded with it first" in (promote["text"]["text"])
    )
    back = buttons["reranker:k2"]["confirm"]
    assert back["title"]["text"] == "Roll back the reranker?"
    assert back["text"]["text"].startswith("`k1` serves the next drafts again")
    assert buttons["retriever:v2"]["confirm"]["text"]["text"].startswith("The shipped model")
    assert buttons["retriever:v2"]["style"] == "danger"


def test_routing_lines_parse_into_rules_and_name_bad_lines():
    rules, problems = parse_routes("tag vip C9\n\nbrand 3 <#C2|support>\ngroup\nsomething else x")
    assert rules == [{"tag": "vip", "channel": "C9"}, {"brand_id": "3", "channel": "C2"}]
    assert problems == [
        "line 4: write brand|group|tag, a value and a channel id",
        "line 5: write brand|group|tag, a value and a channel id",
    ]


def test_button_values_name_their_draft_set():
    assert ButtonValue.decode("12:A") == ButtonValue(12, "A")
    assert ButtonValue.decode("12:99").chunk_id == 99
    for bad in ("", "x:1", None):
        with pytest.raises(MalformedPayload):
            ButtonValue.decode(bad)
    with pytest.raises(MalformedPayload):
        _ = ButtonValue(1, "A").chunk_id


FORM = "application/x-www-form-urlencoded"


def form(payload) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/plain", b"x", "does not send"),
        (FORM, b"payload=%7Bnot-json", "not valid JSON"),
        (FORM, b"foo=bar", "no payload"),
        (FORM, form({"type": "nope", "user": {"id": "U1"}}), "interaction type"),
        (FORM, form({"type": "block_actions", "user": {"id": "U1"}}), "actions list"),
        (FORM, form({"type": "block_actions", "user": {"id": "U1"}, "actions": [{}]}), "action_id"),
        (FORM, form({"type": "block_actions", "actions": [{"action_id": "a"}]}), "user.id"),
        (FORM, form({"type": "view_submission", "user": {"id": "U1"}}), "needs a view"),
        (FORM, b"command=%2Faitl", "user_id"),
        ("application/json", b"[1]", "not a JSON object"),
        ("application/json", b'{"type": "block_actions"}', "Events API"),
        ("application/json", b"[" * 100_000, "not valid JSON"),
        ("application/json", b'{"type": "event_callback"}', "event with a type"),
        ("application/json", b"\xff\xfe", "UTF-8"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(content_type, body, reason):
    with pytest.raises((MalformedPayload, UnsupportedContentType), match=reason):
        parse_request(content_type, body)


def test_real_slack_payloads_pass_the_checks(slack_fixtures):
    for name in (
        "test_block_actions__body.json",
        "test_view_submission__body.json",
        "test_block_suggestion__body.json",
        "test_view_closed__body.json",
    ):
        payload = json.loads((slack_fixtures / name).read_text())
        assert parse_request(FORM, form(payload)).body == payload
    for name in ("test_events__TestEvents_valid_event_body.json",):
        parse_request("application/json", (slack_fixtures / name).read_bytes())


def test_admin_overrides_are_validated_like_settings_and_win_over_the_environment(settings, db):
    with pytest.raises(overrides.InvalidOverride) as refused:
        overrides.validate(settings, {"retrain_cron": "every monday"})
    assert "retrain_cron" in refused.value.problems
    with pytest.raises(overrides.InvalidOverride):
        overrides.validate(settings, {"slack_bot_token": "xoxb-stolen"})
    with db.connection() as conn:
        overrides.save(
            conn, settings, {"digest_cron": "0 9 * * 5", "slack_manager_ids": ["U5"]}, "UA"
        )
        effective = overrides.effective(settings, conn)
    assert (effective.digest_cron, effective.slack_manager_ids) == ("0 9 * * 5", ["U5"])
    assert settings.digest_cron == "0 8 * * 1", "the environment's Settings stay as they were"
    with db.connection() as conn:
        overrides.save(conn, settings, {"digest_cron": None}, "UA")
        assert overrides.effective(settings, conn).digest_cron == "0 8 * * 1"


def test_a_pending_model_change_holds_back_its_kinds_buttons_and_history_keeps_mentions():
    registry = [
        ModelEntry("retriever", "v3", "challenger"),
        ModelEntry("retriever", "v2", "champion"),
        ModelEntry("reranker", "k2", "champion", replaces="k1"),
    ]
    pending = [
        PendingChange("retriever", "v3", "promote", "UADMIN", running=True),
        PendingChange("", "", "retrain", "", running=False, failed_tries=1),
    ]
    history = [
        ModelChange("reranker", "k2", "promoted", "k1", "P@8 0.17 → 0.18 <&>", NOW),
        ModelChange("reranker", "k1", "rolled back", None, "rolled back by <@UADMIN>", NOW),
    ]
    admin = panel(registry=registry, pending_models=pending, model_history=history)
    view = home_view(HomeContent("UADMIN", True, AgentStats({}, 0, {}, NOW), admin)).to_dict()
    values = {
        element.get("value")
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    }
    assert "reranker:k2" in values, "another kind keeps its buttons"
    assert not {"retriever:v3", "retriever:v2"} & values, "no second retriever change meanwhile"
    texts = json.dumps(view, ensure_ascii=False)
    assert ":hourglass: Promotion of the retriever `v3` in progress, asked by <@UADMIN>" in texts
    assert ":hourglass: Weekly retrain queued (retrying: 1 failed try so far)" in texts
    assert "aitl.admin.retrain" not in texts, "no second retrain while one waits"
    assert "`k2` promoted, replacing `k1` — P@8 0.17 → 0.18 &lt;&amp;&gt;" in texts
    assert "`k1` rolled back, the shipped model live again — rolled back by <@UADMIN>" in texts
