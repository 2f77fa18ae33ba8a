"""The knowledge-gap report: planted gap signals, stored the way the Slack listeners store
them in a real database, clustered with the shipped MiniLM."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from flywheel import store as feedback_store
from flywheel.digest import gaps
from flywheel.events import Feedback
from rag import store as rag_store
from rag.embedding import Embedder
from rag.models import Draft, DraftSet, Ticket

START = datetime(2026, 11, 16, tzinfo=UTC)
END = START + timedelta(days=7)
MIDWEEK = START + timedelta(days=3)
REFUND_URL = "https://help.lumen.example/refunds?topic=cancel&lang=en"
STATUS_URL = "https://status.lumen.example/email-delays"
LONG_TICKET = (
    "Hello, I cancelled order LH-4820193 on Monday, an hour after placing it, because I had "
    "ordered the wrong bulbs. The app says the order is cancelled but my card still shows the "
    "charge and nobody told me when the money comes back. How long does a refund take?"
)
REFUND_TICKETS = ("zendesk:101", "zendesk:102", "zendesk:103", "zendesk:104", "zendesk:105")
PASSWORD_TICKETS = ("zendesk:201", "zendesk:202", "zendesk:203")


@pytest.fixture(scope="module")
def encode(minilm_path):
    return Embedder(str(minilm_path), setting="test", batch_size=32).encode


@dataclass
class Desk:
    """Tickets drafted and annotated on one database, as the product stores them."""

    conn: psycopg.Connection
    sets: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    views: int = 0

    def ticket(self, ref: str, text: str) -> int:
        drafts = (Draft("A", "Draft A.", (), {}), Draft("B", "Draft B.", (), {}))
        set_id = rag_store.save_draft_set(
            self.conn, ref, text, DraftSet(Ticket("", text), (), (), drafts, {})
        )
        ids = [d.id for d in rag_store.drafts_of_set(self.conn, set_id)]
        self.sets[ref] = (set_id, ids)
        return set_id

    def click(self, ref: str, kind: str, value: str, *, at=MIDWEEK, agent="U1", **extra) -> int:
        set_id, draft_ids = self.sets[ref]
        feedback = Feedback(
            kind=kind,
            value=value,
            draft_set_id=set_id,
            agent_id=agent,
            clicked_at=at,
            draft_id=dict(zip("AB", draft_ids, strict=True)).get(value),
            **extra,
        )
        stored, _ = feedback_store.record(
            self.conn, feedback, ticket_ref=ref, draft_ids=draft_ids, shown_at=at - timedelta(1)
        )
        return stored.id

    def missing(self, ref: str, *, note=None, url=None, chunk=None, **extra) -> int:
        """What the missing-knowledge modal stores: one slot per modal view."""
        self.views += 1
        value = "article" if chunk else ("url" if url else "note")
        rationale = {k: v for k, v in {"url": url, "note": note}.items() if v}
        return self.click(
            ref,
            "missing_knowledge",
            value,
            subject=f"view:V{self.views}",
            chunk_ids=(chunk,) if chunk else (),
            rationale=rationale,
            **extra,
        )


@dataclass(frozen=True)
class Planted:
    refund_chunk: rag_store.ChunkRef
    superseded: int
    outside: tuple[int, ...]
    boundary: int


@pytest.fixture
def planted(kb_db) -> Planted:
    """Refunds (4 notes + a both-bad), password resets (2 notes + a URL), a dimmer question
    four agents noted on one ticket, a lone outage question; and noise that must not count."""
    with kb_db.connection() as conn:
        desk = Desk(conn)
        chunks = rag_store.live_chunk_texts(conn)
        chunk_id = next(c for c, title, _ in chunks if "refund" in title.lower())
        refund_chunk = rag_store.chunk_refs(conn, [chunk_id])[chunk_id]
        for ref, text in zip(
            REFUND_TICKETS,
            (
                "I cancelled my order an hour after placing it. Where is my money?",
                "Order cancelled before shipping, do I get everything back?",
                LONG_TICKET,
                "Cancelled order 1182, still no refund after 10 days",
                "Hi, I cancelled my order last week and I still haven't got my money back. "
                "When will the refund come?",
            ),
            strict=True,
        ):
            desk.ticket(ref, text)
        boundary = desk.missing(
            "zendesk:101",
            note="No article on refunds for a cancelled order",
            url=REFUND_URL,
            at=START,
        )
        desk.missing(
            "zendesk:102",
            note="How do refunds work when the customer cancels an order before it ships?",
            chunk=chunk_id,
        )
        desk.missing(
            "zendesk:103",
            note="Customer cancelled their order and wants to know when the refund arrives",
        )
        desk.missing(
            "zendesk:104",
            note="Refund timeline after order cancellation is not documented",
            url=REFUND_URL,
        )
        desk.click("zendesk:105", "preference", "both_bad")

        for ref, text in zip(
            PASSWORD_TICKETS,
            (
                "Forgot my password, the reset email is not coming",
                "No password reset email in my inbox or spam",
                "I requested a password reset three times but the reset email never came, "
                "not even in spam.",
            ),
            strict=True,
        ):
            desk.ticket(ref, text)
        desk.missing("zendesk:201", note="Password reset email never arrives")
        desk.missing(
            "zendesk:202",
            note="The reset-password email does not show up in the inbox, not even in spam",
        )
        desk.missing("zendesk:203", url=STATUS_URL)

        desk.ticket("zendesk:301", "Will my Lumen bulbs work with the dimmer in my living room?")
        for agent, note in (
            ("U1", "Which bulbs are compatible with the dimmer switch?"),
            ("U2", "Dimmer switch compatibility for the bulbs is not covered anywhere"),
            ("U3", "Bulbs flicker on a wall dimmer switch; nothing lists compatible dimmers"),
            ("U4", "Customer wants to use Lumen bulbs with an existing dimmer switch"),
        ):
            desk.missing("zendesk:301", note=note, agent=agent)
        desk.ticket("zendesk:302", "Power went out last night and the hub died.")
        desk.missing("zendesk:302", note="Can the hub keep running on battery during an outage?")

        # an answer the agent changed: the both-bad no longer stands
        desk.ticket("zendesk:106", "I want my money back for the order I cancelled yesterday")
        superseded = desk.click("zendesk:106", "preference", "both_bad")
        desk.click("zendesk:106", "preference", "A", at=MIDWEEK + timedelta(minutes=5))
        # outside the window, and clicks that are not gaps
        desk.ticket("zendesk:107", "Refund for my cancelled order please")
        outside = (
            desk.missing(
                "zendesk:107", note="Refunds for cancelled orders", at=START - timedelta(1)
            ),
            desk.missing("zendesk:107", note="Refund after cancelling an order", at=END),
        )
        desk.click("zendesk:107", "adoption", "not_used")
        desk.click("zendesk:107", "relevance", "not_relevant", subject="chunk:1", chunk_ids=(1,))
    return Planted(refund_chunk, superseded, outside, boundary)


def tickets_of(cluster: gaps.GapCluster) -> set[str]:
    return {i.ticket_ref for i in cluster.items}


def test_planted_gaps_cluster_by_topic_ranked_by_ticket_volume(kb_db, planted, encode):
    with kb_db.connection() as conn:
        report = gaps.gap_report(conn, encode, START, END)

    assert [tickets_of(c) for c in report] == [
        set(REFUND_TICKETS),
        set(PASSWORD_TICKETS),
        {"zendesk:301"},  # four notes on one ticket rank below three tickets...
        {"zendesk:302"},  # ...and above one note on one ticket
    ]
    assert [(c.tickets, len(c.items)) for c in report] == [(5, 5), (3, 3), (1, 4), (1, 1)]
    refund = report[0]
    assert {i.kind for i in refund.items} == {"url", "note", "article", "both_bad"}
    assert len({c.key for c in report}) == len(report)


def test_items_are_the_standing_gap_answers_of_the_window(kb_db, planted):
    with kb_db.connection() as conn:
        items = {i.event_id: i for i in gaps.gap_items(conn, START, END)}

    assert len(items) == 13
    assert planted.boundary in items  # the window includes its start...
    assert not set(planted.outside) & set(items)  # ...not its end, nor the week before
    assert planted.superseded not in items
    assert "zendesk:106" not in {i.ticket_ref for i in items.values()}
    assert list(items) == sorted(items)

    by_ticket = {i.ticket_ref: i for i in items.values() if i.ticket_ref != "zendesk:301"}
    note, article = by_ticket["zendesk:101"], by_ticket["zendesk:102"]
    assert (note.kind, note.url, note.article) == ("url", REFUND_URL, None)
    assert note.text == note.note == "No article on refunds for a cancelled order"
    assert note.ticket.startswith("I cancelled my order an hour after")
    assert (article.kind, article.article) == ("article", planted.refund_chunk.title)
    assert article.url == article.article_url == planted.refund_chunk.url
    assert article.text.startswith("How do refunds work")
    url_only, both_bad = by_ticket["zendesk:203"], by_ticket["zendesk:105"]
    assert (url_only.kind, url_only.url, url_only.note) == ("url", STATUS_URL, None)
    assert url_only.text == url_only.ticket  # nothing written: the ticket is what is clustered
    assert (both_bad.kind, both_bad.url, both_bad.article) == ("both_bad", None, None)
    assert both_bad.text == both_bad.ticket
    assert "haven't got my money back" in both_bad.text


def test_examples_articles_and_titles(kb_db, planted, encode):
    with kb_db.connection() as conn:
        refund, password, dimmer, outage = gaps.gap_report(conn, encode, START, END)

    assert len(refund.examples) == 3
    assert all(len(e) <= 200 for e in refund.examples)
    tickets = {i.ticket for i in refund.items}
    assert all(e in tickets or e.endswith("…") for e in refund.examples)
    cut = [e for e in refund.examples if e.endswith("…")]
    assert all(LONG_TICKET.startswith(e.removesuffix("…")) for e in cut)
    assert dimmer.examples == ("Will my Lumen bulbs work with the dimmer in my living room?",)

    # the URL two agents gave comes before the article one agent picked
    assert refund.articles == (
        (REFUND_URL, REFUND_URL),
        (planted.refund_chunk.title, planted.refund_chunk.url),
    )
    assert password.articles == ((STATUS_URL, STATUS_URL),)
    assert outage.articles == ()

    for cluster, word in ((refund, "refund"), (password, "password"), (dimmer, "dimmer")):
        assert 0 < len(cluster.title) <= 80
        assert word in cluster.title.lower()
    assert "outage" in outage.title.lower() or "battery" in outage.title.lower()


def test_keys_stable_across_runs_and_input_order(kb_db, planted, encode):
    with kb_db.connection() as conn:
        items = gaps.gap_items(conn, START, END)
    shuffled = list(items)
    random.Random(7).shuffle(shuffled)

    first = gaps.cluster_gaps(items, encode)
    assert gaps.cluster_gaps(shuffled, encode) == first
    assert gaps.cluster_gaps(list(reversed(items)), encode) == first

    # one more signal on the refund topic is another cluster to the Help Center...
    extra = replace(items[0], event_id=max(i.event_id for i in items) + 1)
    grown = gaps.cluster_gaps([*items, extra], encode)
    assert grown[0].key != first[0].key
    # ...while the clusters it did not touch keep their keys
    assert [c.key for c in grown[1:]] == [c.key for c in first[1:]]


def test_threshold_and_max_clusters(kb_db, planted, encode):
    with kb_db.connection() as conn:
        items = gaps.gap_items(conn, START, END)

    assert len(gaps.cluster_gaps(items, encode, max_clusters=2)) == 2
    strict = gaps.cluster_gaps(items, encode, threshold=0.99, max_clusters=len(items))
    assert len(strict) == len(items)  # nothing is that close: every signal stands alone
    assert strict[0].tickets == 1


def test_article_body_escapes_what_agents_and_customers_wrote(encode):
    items = [
        gaps.GapItem(
            ticket_ref="zendesk:9",
            draft_set_id=9,
            ticket="My <b>hub</b> & bulbs <script>alert(1)</script>",
            kind="note",
            text="Hub pairing fails <img src=x onerror=alert(1)>",
            url='https://help.example/?a=1&b="2"',
            article=None,
            event_id=1,
            note="Hub pairing fails <img src=x onerror=alert(1)>",
        ),
        gaps.GapItem(
            ticket_ref="zendesk:10",
            draft_set_id=10,
            ticket="Pairing the hub keeps failing",
            kind="url",
            text="Pairing the hub keeps failing",
            url="javascript:alert(1)",
            article=None,
            event_id=2,
        ),
    ]
    (cluster,) = gaps.cluster_gaps(items, encode, threshold=0.3)
    body = cluster.article_body()

    assert "<script>" not in body and "<img" not in body and "<b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert '<a href="https://help.example/?a=1&amp;b=&quot;2&quot;">' in body
    assert 'href="javascript' not in body and "javascript:alert(1)" in body
    assert "2 tickets" in body


def test_suggested_title_is_short_and_names_the_theme():
    notes = [
        "Refund timeline after order cancellation is not documented",
        "No article on refunds for a cancelled order",
        "Customer cancelled their order and wants to know when the refund arrives",
    ]
    title = gaps.suggested_title(notes)
    assert "refund" in title.lower() and len(title) <= 80
    rambling = " ".join(["The thermostat display flickers whenever the heating starts"] * 10)
    assert 0 < len(gaps.suggested_title([rambling])) <= 80
    assert "[EMAIL]" not in gaps.suggested_title(["Email change for [EMAIL] never confirmed"])
    assert gaps.suggested_title([]) == gaps.suggested_title(["  "]) != ""


def test_empty_window_reports_nothing(db, encode):
    calls: list[list[str]] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return encode(texts)

    with db.connection() as conn:
        assert gaps.gap_report(conn, counting, START, END) == []
        desk = Desk(conn)
        desk.ticket("zendesk:1", "Where is my parcel?")
        desk.missing("zendesk:1", note="Lost parcels", at=END + timedelta(days=1))
        desk.click("zendesk:1", "preference", "B")
        assert gaps.gap_report(conn, counting, START, END) == []
        assert len(gaps.gap_report(conn, counting, END, END + timedelta(days=7))) == 1
    assert calls == [["Lost parcels"]]  # the empty windows never loaded the model
