"""Offline evaluation of a generator: champion vs challenger drafts judged pairwise by an LLM.

Both generators draft a reply to the same held-out tickets, exactly as they would be served;
the judge sees the two replies in a random order (a seeded coin per ticket, so a judge that
prefers the first reply cannot favour either side) and answers in JSON which is better. The
win rate counts a tie as half a win. An answer the judge garbles is left out, not guessed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flywheel.registry import Decision
from rag.generation import DraftInput

log = logging.getLogger(__name__)
Chat = Callable[[str, str], str]
SYSTEM_PROMPT = "judge_pairwise_system.txt"
PAIRWISE_PROMPT = "judge_pairwise.txt"


class Drafter(Protocol):
    def invoke(self, input: DraftInput, config: Any = None) -> Any: ...


@dataclass(frozen=True)
class WinRate:
    """The challenger's record against the champion on held-out tickets."""

    wins: int = 0
    losses: int = 0
    ties: int = 0
    unreadable: int = 0

    @property
    def judged(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def rate(self) -> float | None:
        return (self.wins + 0.5 * self.ties) / self.judged if self.judged else None

    def as_metrics(self) -> dict[str, Any]:
        return {
            "win_rate": None if self.rate is None else round(self.rate, 4),
            **dataclasses.asdict(self),
            "judged": self.judged,
        }


def win_rate(
    requests: Sequence[DraftInput],
    champion: Drafter,
    challenger: Drafter,
    chat: Chat,
    prompts: Callable[[str], str],
    *,
    seed: int = 0,
) -> WinRate:
    """Drafts from both at temperature 0 for each request, judged one ticket at a time."""
    rng = random.Random(seed)
    counts = {"wins": 0, "losses": 0, "ties": 0, "unreadable": 0}
    for request in requests:
        steady = dataclasses.replace(
            request, variant=dataclasses.replace(request.variant, temperature=0.0)
        )
        ours = challenger.invoke(steady).text
        theirs = champion.invoke(steady).text
        challenger_first = rng.random() < 0.5
        first, second = (ours, theirs) if challenger_first else (theirs, ours)
        user = prompts(PAIRWISE_PROMPT).format(
            ticket=request.ticket.body, sources=_sources(request), reply_1=first, reply_2=second
        )
        try:
            better = parse_better(chat(prompts(SYSTEM_PROMPT), user))
        except ValueError as exc:
            log.warning("generator judge: unreadable answer (%s)", exc)
            counts["unreadable"] += 1
            continue
        if better == "tie":
            counts["ties"] += 1
        elif (better == "1") == challenger_first:
            counts["wins"] += 1
        else:
            counts["losses"] += 1
    return WinRate(**counts)


def decide_generator(result: WinRate, *, margin: float, tolerance: float, min_judged: int) -> str:
    """'promote' on a clear win, 'reject' on a clear loss, else 'online' (A/B by clicks)."""
    if result.judged < min_judged or result.rate is None:
        return "online"
    if result.rate - 0.5 >= max(margin, 0.0) and result.wins > result.losses:
        return "promote"
    if 0.5 - result.rate > tolerance:
        return "reject"
    return "online"


def describe(result: WinRate, outcome: str) -> Decision:
    """The gate's decision with a reason a manager can read."""
    if result.rate is None:
        return Decision(False, "not evaluated: the LLM judge gave no readable verdict")
    record = (
        f"win rate {result.rate:.1%} vs the champion ({result.wins} won, {result.losses} lost,"
        f" {result.ties} tied on {result.judged} held-out tickets)"
    )
    if outcome == "promote":
        return Decision(True, record)
    if outcome == "reject":
        return Decision(False, f"{record}: rejected")
    return Decision(False, f"{record}: not conclusive; served in drafts A/B so clicks decide")


def _sources(request: DraftInput) -> str:
    return "\n".join(f"- {p.title}: {p.text}" for p in request.passages) or "(none)"


def parse_better(text: str) -> str:
    """'1', '2' or 'tie' from the first JSON object of the judge's answer."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg}") from exc
    better = str(data.get("better", "")).strip().lower() if isinstance(data, dict) else ""
    if better not in ("1", "2", "tie"):
        raise ValueError(f"'better' must be 1, 2 or tie, not {better!r}")
    return better
