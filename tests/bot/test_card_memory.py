"""The card says when earlier clicks on similar tickets moved a source: "ranked up by 3 similar
tickets" on the source's line. Block Kit from stored content, then a ticket through the Zendesk
sandbox, the worker and the real Bolt app, drafted with a feedback memory wired in by the
composition root (build_services)."""

from __future__ import annotations

import itertools
import json

import pytest

from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from bot import actions
from bot.card_views import CardContent, as_dicts, card_blocks
from rag import factory
from rag.memory import MemoryVote
from rag.models import Ticket
from rag.store import ChunkRef, StoredDraft
from sandboxes.slack.state import AGENT_ALICE, SUPPORT_CHANNEL
from tests.support.sandboxes import connected_settings, run_worker, ticket_thread
from tests.support.slack_app import click, slack_fixture  # noqa: F401 (the slack fixture)


def ref(chunk_id: int) -> ChunkRef:
    return ChunkRef(chunk_id, chunk_id, f"Article {chunk_id}", None, "x", "Some text.")


def source_lines(blocks: list[dict]) -> dict[int, str]:
    """Each source's line on the card, by chunk id (the line sits above its buttons)."""
    lines = {}
    for above, block in itertools.pairwise(blocks):
        if block.get("block_id", "").startswith("aitl.rel."):
            lines[int(block["block_id"].rsplit(".", 1)[1])] = above["text"]["text"]
    return lines


def footer(blocks: list[dict]) -> str:
    return blocks[-1]["elements"][0]["text"]


def test_each_moved_source_says_how_and_by_how_many_similar_tickets():
    drafts = [StoredDraft(1, 7, "A", "Reply.", [1, 2, 3, 4], {})]
    memory = {
        1: {"moved": "up", "tickets": 3, "agents": 2, "score": 1.2},
        2: {"moved": "down", "tickets": 2, "agents": 2, "score": -0.8},
        3: {"moved": "joined", "tickets": 1, "agents": 2, "score": 0.9},
    }
    sources = [ref(1), ref(2), ref(3), ref(4)]
    moved, _ = card_blocks(CardContent(7, "ticket", {"number": 5}, drafts, sources, [], memory))
    lines = source_lines(as_dicts(moved))
    assert lines[1].startswith("[1] Article 1 · _ranked up by 3 similar tickets_\n")
    assert lines[2].startswith("[2] Article 2 · _ranked down by 2 similar tickets_\n")
    assert lines[3].startswith("[3] Article 3 · _suggested by 1 similar ticket_\n")
    assert "similar" not in lines[4]
    assert "count on the next similar ticket" in footer(as_dicts(moved))

    still, _ = card_blocks(CardContent(7, "ticket", {"number": 5}, drafts, sources, []))
    assert not any("similar" in line for line in source_lines(as_dicts(still)).values())
    assert footer(as_dicts(still)) == "4 sources cited. Your clicks train next week's drafts."


class ChosenVotes:
    """A FeedbackMemory answering chosen votes (the flywheel's is tested in tests/flywheel)."""

    def __init__(self, votes: list[MemoryVote]) -> None:
        self.chosen = votes

    def votes(self, query_vector, *, version: str, brand: str | None = None) -> list[MemoryVote]:
        return list(self.chosen)


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    return connected_settings(kb_settings, slack, zendesk, tmp_path)


SUBJECT = "Hub keeps going offline"
BODY = "My Lumen hub drops off the wifi every night. How do I reset it?"


@pytest.fixture
def remembered(kb_settings, kb_db) -> dict[str, MemoryVote]:
    """Three similar tickets marked the eleventh passage found relevant (it climbs to the top);
    two marked the first not relevant, by half its lead over the second: it stays on the card,
    one place lower among the passages found."""
    query = Ticket(SUBJECT, BODY).query_text()
    found = factory.pipeline(kb_settings, kb_db).retriever.search(query, 20)
    lead = found[0].similarity - found[1].similarity
    demotion = -lead / 2 / kb_settings.memory_weight
    return {
        "up": MemoryVote(found[10].chunk_id, 1.0, 3, 3, (1, 2, 3)),
        "down": MemoryVote(found[0].chunk_id, demotion, 2, 2, (4, 5)),
    }


@pytest.fixture
def services(settings, kb_db, remembered):
    votes = list(remembered.values())
    return build_services(
        settings, kb_db, build_deferrer(kb_db.url), memory=lambda *_: ChosenVotes(votes)
    )


def test_the_posted_card_says_which_sources_similar_tickets_moved(
    services, settings, slack, zendesk, web, kb_db, remembered
):
    assert services.zendesk.pipeline().memory is not None
    _, parent, card = ticket_thread(
        services,
        zendesk,
        slack,
        web,
        SUBJECT,
        BODY,
    )
    lines = source_lines(card["blocks"])
    router, hub = remembered["up"].chunk_id, remembered["down"].chunk_id
    assert lines[router].startswith("[1] ")
    assert "· _ranked up by 3 similar tickets_" in lines[router]
    assert "· _ranked down by 2 similar tickets_" in lines[hub]
    assert sum("similar ticket" in line for line in lines.values()) == 2

    # a click re-renders the card from what was stored: the notes stay, the answer shows
    clicked = click(slack, web, AGENT_ALICE, card, actions.RELEVANT, block_id=f"aitl.rel.{router}")
    assert clicked.status_code == 200
    run_worker(services)
    [updated] = slack.replies(SUPPORT_CHANNEL, parent["ts"])
    line = source_lines(updated["blocks"])[router]
    assert "ranked up by 3 similar tickets" in line and f"<@{AGENT_ALICE}>: relevant" in line
    assert "count on the next similar ticket" in json.dumps(updated["blocks"][-1])
