"""The card shows a reply reused from a similar ticket in plain words: "Reply from a similar
ticket (#4321, 98% similar)", the number linking to that ticket, and a line telling the agent
whose names are in it. Block Kit from stored content, then a ticket through the Zendesk
sandbox, the worker and the real Bolt app, drafted with the flywheel's memory as the
composition root wires it (build_services): the new customer's name is in the draft, the
earlier one's is not, and a Prefer click on the card counts in the reuse's online duel."""

from __future__ import annotations

import pytest

from aitl.app.wiring import memory_builder
from bot import actions
from bot.card_views import REUSED_HINT, CardContent, as_dicts, card_blocks
from flywheel.online import OnlineDecision
from rag import store as rag_store
from rag.memory import REUSED_REPLY
from rag.store import StoredDraft
from sandboxes.slack.state import AGENT_ALICE, SUPPORT_CHANNEL
from tests.flywheel.test_memory_replies import adopt, card, chunks_of, source_ticket
from tests.support.sandboxes import connected_settings, run_worker
from tests.support.slack_app import click, slack_fixture  # noqa: F401 (the slack fixture)

URL = "https://acme.zendesk.com/agent/tickets/99"


def reused_draft(ref: str = "zendesk:4321", similarity: float = 0.9412) -> StoredDraft:
    producer = {
        "role": "challenger",
        "generator": REUSED_REPLY,
        "reused_from": {"ticket_ref": ref, "similarity": similarity, "agents": ["U1"]},
    }
    return StoredDraft(2, 7, "B", "Hi Bo, your parcel ships tomorrow.", [], producer)


def draft_texts(blocks: list[dict]) -> dict[str, str]:
    return {
        b["block_id"].rsplit(".", 1)[1]: b["text"]["text"]
        for b in blocks
        if b.get("block_id", "").startswith("aitl.draft.")
    }


def test_the_reused_draft_says_where_it_comes_from_in_plain_words():
    drafts = [
        StoredDraft(1, 7, "A", "Hello.", [], {"variant": "concise", "role": "champion"}),
        reused_draft(),
    ]
    blocks, _ = card_blocks(CardContent(7, "ticket", {"number": 99, "url": URL}, drafts, [], []))
    shown = as_dicts(blocks)
    texts = draft_texts(shown)
    assert texts["A"].startswith("*Draft A* · concise\n")
    assert texts["B"].startswith(
        "*Draft B* · Reply from a similar ticket"
        " (<https://acme.zendesk.com/agent/tickets/4321|#4321>, 94% similar)\nHi Bo,"
    )
    hints = [b for b in shown if b["type"] == "context" and REUSED_HINT in str(b)]
    assert len(hints) == 1, "one hint, under the reused draft"

    # without the ticket's address the number is plain text; a Slack question has no number
    blocks, _ = card_blocks(CardContent(7, "ticket", {"number": 99}, [reused_draft()], [], []))
    assert "(#4321, 94% similar)" in draft_texts(as_dicts(blocks))["B"]
    asked = reused_draft("ask:5e1f", 0.97)
    blocks, _ = card_blocks(CardContent(7, "ask", {"question": "q"}, [asked], [], []))
    assert "Reply from a similar question (97% similar)" in draft_texts(as_dicts(blocks))["B"]


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    return connected_settings(kb_settings, slack, zendesk, tmp_path)


def test_a_near_identical_ticket_gets_a_reply_of_its_own_customer_and_a_counted_duel(
    services, settings, slack, zendesk, web, kb_db
):
    from connectors import setup

    (track,) = chunks_of(kb_db, "track-your-order")
    source_ticket(kb_db)  # #4321 from Ana Lopez, answered by Sam Reyes
    adopt(kb_db, card(kb_db, citations=(track,)))
    assert memory_builder(settings, kb_db).refresh().replies == 1

    setup.connect(
        services.zendesk, email=zendesk.agent_email, api_token=zendesk.api_token, public_url=web.url
    )
    ticket = zendesk.create_ticket(
        "Where is my order?",
        "Hi, my order still has not arrived after two weeks. Where is my parcel? Thanks, Bo",
        "bo@example.com",
        requester_name="Bo Chen",
    )
    zendesk.deliver_pending()
    run_worker(services)
    parent = next(m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"])
    [posted] = slack.replies(SUPPORT_CHANNEL, parent["ts"])

    with kb_db.connection() as conn:
        [set_id] = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM rag_draft_sets WHERE ticket_ref = %s", (f"zendesk:{ticket['id']}",)
            )
        ]
        drafts = {d.producer.get("generator"): d for d in rag_store.drafts_of_set(conn, set_id)}
    reused = drafts[REUSED_REPLY]
    assert reused.text.startswith("Hi Bo,\n\nSorry your order is late.")
    assert f"For ticket #{ticket['id']} we checked" in reused.text
    for theirs in ("Ana", "Lopez", "Sam", "Reyes", "4321"):
        assert theirs not in reused.text
    shown = draft_texts(posted["blocks"])[reused.label]
    assert "Reply from a similar ticket (<" in shown and "|#4321>, " in shown
    assert "Hi Bo," in shown and "Ana" not in shown

    # the agent prefers the champion's draft: one duel of the reuse against the champion
    champion = "B" if reused.label == "A" else "A"
    answered = click(
        slack,
        web,
        AGENT_ALICE,
        {**posted, "channel": SUPPORT_CHANNEL},
        f"{actions.PREFER}.{champion}",
    )
    assert answered.status_code == 200
    duel = OnlineDecision.reading(settings, kb_db).reuse_state()
    assert duel is not None and duel.preference.duels == 1 and duel.preference.win_rate == 0.0
