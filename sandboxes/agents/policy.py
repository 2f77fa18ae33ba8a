"""Simulated agents: they read a card and click, through the same recorder the Slack listeners
call, so the demo, the tests and the flywheel benchmark exercise the real event path.

An agent knows which chunks truly answer the ticket (the gold labels of a dataset). It marks
the shown sources from them, flips a share of those marks as noise, names gold knowledge that
was not shown as missing (optionally naming, for a share of those, a retrieved passage that
does not answer instead), prefers the draft citing more gold, and sends a draft that cites gold
(the first of two equally good ones) or says it went unused for lack of knowledge.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from aitl.core.db import Database
from bot import store as bot_store
from bot.recorder import FeedbackRecorder
from flywheel.events import Feedback
from rag import store as rag_store

SIMULATED = "simulated"  # the channel of cards shown without Slack


@dataclass(frozen=True)
class AgentPolicy:
    noise: float = 0.2  # share of relevance marks flipped
    read_seconds: float = 25.0  # how long the agent reads before the first click
    max_missing: int = 3  # gold chunks not shown that the agent names
    careless_share: float = 0.0  # share of cards clicked through in a second, unread
    missing_noise: float = 0.0  # share of missing-knowledge picks naming a wrong nearby passage


@dataclass(frozen=True)
class ShownCard:
    card: bot_store.Card
    drafts: dict[str, list[int]]  # label → cited chunk ids

    @property
    def sources(self) -> list[int]:
        return list(dict.fromkeys(c for label in sorted(self.drafts) for c in self.drafts[label]))


def show(db: Database, draft_set_id: int, ticket_ref: str, channel: str = SIMULATED) -> ShownCard:
    """Record a draft set as shown on a card, as posting it to Slack would."""
    with db.connection() as conn:
        drafts = rag_store.drafts_of_set(conn, draft_set_id)
        card = bot_store.ensure_card(
            conn,
            handoff_key=f"simulated:{draft_set_id}",
            kind="ticket",
            draft_set_id=draft_set_id,
            ticket_ref=ticket_ref,
            drafts={d.label: d.id for d in drafts},
            header={"simulated": True},
            channel=channel,
        )
        bot_store.mark_shown(conn, card.id, channel, f"sim.{card.id}")
        card = bot_store.card(conn, card.id) or card
    return ShownCard(card, {d.label: list(d.citations) for d in drafts})


class SimulatedAgent:
    def __init__(self, agent_id: str, recorder: FeedbackRecorder, policy: AgentPolicy, seed: int):
        self.agent_id = agent_id
        self.recorder = recorder
        self.policy = policy
        self.rng = random.Random(seed)

    def annotate(self, shown: ShownCard, gold: Iterable[int], nearby: Sequence[int] = ()) -> int:
        """Click through one card; returns how many events were stored. ``nearby`` are passages
        the agent may confuse with the answer (say, what the retriever found for the ticket)."""
        gold = set(gold)
        careless = self.rng.random() < self.policy.careless_share
        clock = (
            _Clock(shown.card.shown_at, 0.5, step=0.1)
            if careless
            else _Clock(shown.card.shown_at, self.policy.read_seconds)
        )
        stored = 0
        noise = 0.5 if careless else self.policy.noise  # unread, a mark is a coin toss
        for chunk_id in shown.sources:
            relevant = (chunk_id in gold) != (self.rng.random() < noise)
            value = "relevant" if relevant else "not_relevant"
            stored += self._click(
                shown,
                "relevance",
                value,
                clock.next(),
                subject=f"chunk:{chunk_id}",
                chunk_ids=(chunk_id,),
            )
        missing = [c for c in sorted(gold) if c not in shown.sources][: self.policy.max_missing]
        if self.policy.missing_noise:
            missing = confused(missing, gold, nearby, self.policy.missing_noise, self.rng)
        for chunk_id in missing:
            stored += self._click(
                shown,
                "missing_knowledge",
                "article",
                clock.next(),
                subject=f"sim:{chunk_id}",
                chunk_ids=(chunk_id,),
            )
        preferred = preference(shown.drafts, gold)
        label = preferred if preferred in ("A", "B") else None
        stored += self._click(shown, "preference", preferred, clock.next(), label=label)
        sent = sent_draft(shown.drafts, gold, preferred)
        reason = {"reason": "accurate", "label": sent} if sent else {"reason": "missing_knowledge"}
        stored += self._click(
            shown,
            "adoption",
            "as_is" if sent else "not_used",
            clock.next(),
            label=sent,
            rationale=reason,
        )
        return stored

    def _click(self, shown, kind, value, when, *, label=None, **fields) -> int:
        return record_click(
            self.recorder, self.agent_id, shown, kind, value, when, label=label, **fields
        )


def record_click(
    recorder: FeedbackRecorder, agent_id: str, shown, kind, value, when, *, label=None, **fields
) -> int:
    """One simulated click stored through the recorder the Slack listeners use; 1 if new."""
    feedback = Feedback(
        kind=kind,
        value=value,
        draft_set_id=shown.card.draft_set_id,
        agent_id=agent_id,
        clicked_at=when,
        source="simulated",
        **fields,
    )
    refresh = shown.card.channel != SIMULATED
    return int(recorder.record(feedback, label=label, refresh=refresh).created)


def confused(
    picks: list[int], gold: set[int], nearby: Sequence[int], share: float, rng: random.Random
) -> list[int]:
    """The picks with a share of them swapped for a nearby passage that does not answer the
    ticket (those shown on the card among them), each wrong passage named once."""
    wrong = [c for c in dict.fromkeys(nearby) if c not in gold]
    picked = []
    for chunk_id in picks:
        if wrong and rng.random() < share:
            chunk_id = wrong.pop(rng.randrange(len(wrong)))
        picked.append(chunk_id)
    return picked


def preference(cited: dict[str, list[int]], gold: set[int]) -> str:
    """The draft citing more of the articles that answer the ticket; a tie, or both bad."""
    hits = {label: len(set(chunks) & gold) for label, chunks in cited.items()}
    if len(hits) < 2:
        return "tie"
    if max(hits.values()) == 0:
        return "both_bad"
    a, b = hits.get("A", 0), hits.get("B", 0)
    return "tie" if a == b else ("A" if a > b else "B")


def sent_draft(cited: dict[str, list[int]], gold: set[int], preferred: str) -> str | None:
    """The draft the agent sends as it is: the preferred one if it cites an answer, the first
    of two equally good ones on a tie; None (unused for lack of knowledge) when none does."""
    label = "A" if preferred == "tie" else preferred
    return label if set(cited.get(label, ())) & gold else None


class _Clock:
    """Click times after the card was shown: the read time first, then a few seconds apart."""

    def __init__(self, shown_at, first_s: float, step: float = 2.0) -> None:
        self.at = shown_at + timedelta(seconds=first_s)
        self.step = timedelta(seconds=step)

    def next(self):
        at = self.at
        self.at += self.step
        return at
