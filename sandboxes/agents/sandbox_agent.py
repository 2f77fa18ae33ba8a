"""A simulated support agent working in the Slack sandbox as a person would: it reads a card,
then clicks its buttons and fills its modals through the sandbox page's own endpoint, so every
click is a signed request to the app's ``/slack/events`` and takes the product's real path.

What the agent knows is the ticket's gold articles (which chunks answer it); its policy says how
careful it is (``sandboxes.agents.policy.AgentPolicy``). It prefers the draft that says more of
the right answer (the share of its sentences the gold articles support), ties drafts within
``CLOSE`` of each other, and sends a draft that is mostly right (``USABLE``) as it is. The
sandbox's clock is moved forward by the time it reads, so the click times the app records are
those of a person.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

from aitl.core.db import Database
from bot import actions
from bot.actions import ButtonValue
from bot.exceptions import BotError
from flywheel.reply_metrics import faithfulness
from rag import store as rag_store
from sandboxes.agents.policy import AgentPolicy
from sandboxes.slack.server import SlackSandbox

USABLE = 0.5  # a draft half of whose sentences the right article supports can be sent
CLOSE = 0.15  # support closer than this reads as a tie


class SandboxClickFailed(BotError):
    """The app did not take a click the sandbox sent it."""


@dataclass
class SimClock:
    """The sandbox's clock: real time plus the reading time agents have spent on the card in
    hand (``offset``, reset per card)."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def wait(self, seconds: float) -> None:
        self.offset += seconds

    def new_card(self) -> None:
        """Reading starts when the card is shown."""
        self.offset = 0.0


@dataclass(frozen=True)
class Answered:
    """What an agent did with a card: the clicks sent, and the draft used (label and text)."""

    clicks: int
    used: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Card:
    channel: str
    ts: str
    draft_set_id: int
    sources: tuple[int, ...]  # chunk ids with relevance buttons, in the card's order


class SandboxAgent:
    def __init__(
        self,
        sandbox: SlackSandbox,
        sandbox_url: str,
        db: Database,
        user_id: str,
        policy: AgentPolicy,
        *,
        seed: int,
        clock: SimClock,
        boilerplate: Sequence[str] = (),
    ) -> None:
        self.sandbox = sandbox
        self.act_url = f"{sandbox_url.rstrip('/')}/sandbox/act"
        self.db = db
        self.user_id = user_id
        self.policy = policy
        self.rng = random.Random(seed)
        self.clock = clock
        self.boilerplate = tuple(boilerplate)  # the drafts' closing: not a claim to check

    def annotate(self, card: Card, gold: Iterable[int], gap_note: str | None = None) -> Answered:
        """Read the card and answer every question on it; returns the clicks sent and the
        draft used, which the agent then sends to the customer."""
        gold = set(gold)
        careless = self.rng.random() < self.policy.careless_share
        self.clock.wait(0.5 if careless else self.policy.read_seconds)
        noise = 0.5 if careless else self.policy.noise
        clicks = 0
        for chunk_id in card.sources:
            relevant = (chunk_id in gold) != (self.rng.random() < noise)
            action = actions.RELEVANT if relevant else actions.NOT_RELEVANT
            clicks += self._click(card, action, f"aitl.rel.{chunk_id}")
        drafts = self._drafts(card.draft_set_id)
        support = supported_shares(drafts, self._texts(gold), self.boilerplate)
        preferred = preference_by_support(support)
        clicks += self._click(card, f"{actions.PREFER}.{preferred}")
        label = "A" if preferred == "tie" else preferred if preferred in ("A", "B") else None
        if label is not None and support[label] >= USABLE:
            clicks += self._adopt(card, f"{actions.ADOPT}.as_is.{label}", "accurate")
            return Answered(clicks, label, drafts[label])
        reason = "missing_knowledge" if gap_note else "generic"
        clicks += self._adopt(card, f"{actions.ADOPT}.not_used", reason, gap_note)
        return Answered(clicks)

    # --- clicks -----------------------------------------------------------------------------

    def _click(self, card: Card, action_id: str, block_id: str | None = None) -> int:
        self.clock.wait(2.0)
        self._act(
            {
                "kind": "block_actions",
                "channel": card.channel,
                "ts": card.ts,
                "action_id": action_id,
                "block_id": block_id,
            }
        )
        return 1

    def _adopt(self, card: Card, action_id: str, reason: str, note: str | None = None) -> int:
        """The adoption button opens a modal: pick the reason and save; then, when the
        knowledge was missing, say what was missing in the modal that follows."""
        self._click(card, action_id)
        view = self._top_view(actions.ADOPTION_VIEW)
        self.clock.wait(3.0)
        values = {
            actions.REASON: {
                actions.REASON: {"type": "static_select", "selected_option": {"value": reason}}
            }
        }
        self._act({"kind": "view_submission", "view_id": view["id"], "values": values})
        follow_up = self._top_view(actions.MISSING_VIEW, required=False)
        if follow_up is None:
            return 2
        if note:
            self.clock.wait(5.0)
            values = {actions.NOTE: {actions.NOTE: {"type": "plain_text_input", "value": note}}}
            self._act({"kind": "view_submission", "view_id": follow_up["id"], "values": values})
            return 3
        self._act({"kind": "close_view", "view_id": follow_up["id"]})
        return 2

    def _act(self, body: dict) -> dict:
        answer = httpx.post(self.act_url, json={"user": self.user_id, **body}, timeout=30)
        found = answer.json() if answer.content else {}
        if answer.status_code != 200 or int(found.get("status") or 200) >= 400:
            raise SandboxClickFailed(f"{body.get('kind')} {body.get('action_id', '')}: {found}")
        if found.get("errors"):
            raise SandboxClickFailed(f"the modal refused the answer: {found['errors']}")
        return found

    def _top_view(self, callback_id: str, *, required: bool = True) -> dict | None:
        views = [v for v in self.sandbox.open_views(self.user_id) if v.get("callback_id")]
        top = views[-1] if views else None
        if top is not None and top["callback_id"] == callback_id:
            return top
        if required:
            found = top["callback_id"] if top else "none"
            raise SandboxClickFailed(f"expected the {callback_id} modal, found {found}")
        return None

    def _drafts(self, draft_set_id: int) -> dict[str, str]:
        """The card's drafts as the agent reads them."""
        with self.db.connection() as conn:
            return {d.label: d.text for d in rag_store.drafts_of_set(conn, draft_set_id)}

    def _texts(self, gold: set[int]) -> list[str]:
        """The passages that answer the ticket: what the agent knows to be right."""
        if not gold:
            return []
        with self.db.connection() as conn:
            refs = rag_store.chunk_refs(conn, sorted(gold))
        return [ref.text for ref in refs.values()]


def supported_shares(
    drafts: dict[str, str], answer: list[str], boilerplate: Sequence[str] = ()
) -> dict[str, float]:
    """Per draft, the share of its sentences the articles that answer the ticket support: how
    an agent who knows the answer reads a draft (0 when nothing answers the ticket). The
    greeting (up to the first blank line) and ``boilerplate`` (the closing) are not read as
    claims."""
    return {
        label: (faithfulness(_body(text), answer, boilerplate) or 0.0) if answer else 0.0
        for label, text in drafts.items()
    }


def _body(draft: str) -> str:
    """The draft without its greeting: every drafter opens with the same one."""
    parts = draft.split("\n\n")
    return "\n\n".join(parts[2:] if len(parts) > 3 else parts)


def preference_by_support(support: dict[str, float]) -> str:
    """The draft that says more of the right answer; a tie within ``CLOSE``; both bad when
    neither is usable."""
    a, b = support.get("A", 0.0), support.get("B", 0.0)
    if max(a, b) < USABLE:
        return "both_bad"
    if abs(a - b) < CLOSE:
        return "tie"
    return "A" if a > b else "B"


def card_of(message: dict, channel: str) -> Card | None:
    """The card's draft set and sources, from the buttons of a sandbox message."""
    set_id, sources = None, []
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if not str(element.get("action_id", "")).startswith("aitl."):
                continue
            try:
                value = ButtonValue.decode(element.get("value"))
            except BotError:
                continue
            set_id = value.draft_set_id
            if element["action_id"] == actions.RELEVANT:
                sources.append(value.chunk_id)
    if set_id is None:
        return None
    return Card(channel, message["ts"], set_id, tuple(sources))
