"""The virtual judge: screens every feedback event before training, with a verdict and a reason.

Without an LLM, rules catch what a careful reviewer would: an agent contradicting themselves
(preferred A but sent B; "relevant" on a card whose drafts went unused for lack of knowledge;
"not relevant" on every passage of the draft they then sent as it was), an adoption click the
reply actually sent in Zendesk contradicts,
clicks too fast to have read anything, "relevant" on a passage that shares nothing with the
ticket, "missing" knowledge that was in fact shown. With a chat model configured, an LLM judge
reads each relevance and preference event through ``prompts/judge_*.txt`` and answers in JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from flywheel.events import StoredFeedback
from flywheel.feedback import SENT_REPLY
from rag.store import ChunkRef, DraftSetInfo

WORD = re.compile(r"[a-z0-9]{3,}")
STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "you",
        "your",
        "are",
        "was",
        "were",
        "with",
        "this",
        "that",
        "have",
        "has",
        "had",
        "not",
        "but",
        "can",
        "will",
        "would",
        "could",
        "should",
        "there",
        "their",
        "they",
        "them",
        "what",
        "when",
        "where",
        "which",
        "who",
        "how",
        "does",
        "did",
        "doing",
        "about",
        "from",
        "into",
        "onto",
        "than",
        "then",
        "also",
        "just",
        "very",
        "much",
        "more",
        "most",
        "any",
        "some",
        "all",
        "our",
        "ours",
        "its",
        "it's",
        "been",
        "being",
        "get",
        "got",
        "like",
        "want",
        "need",
        "please",
        "thanks",
        "thank",
        "hello",
        "hi",
        "yes",
        "one",
        "two",
        "may",
        "might",
    ]
)


@dataclass(frozen=True)
class Verdict:
    event_id: int
    keep: bool
    reason: str
    judge: str


@dataclass(frozen=True)
class JudgeContext:
    """What the judge may look at besides the events: the draft sets and the chunks."""

    sets: dict[int, DraftSetInfo]
    chunks: dict[int, ChunkRef]


@dataclass(frozen=True)
class RuleSettings:
    min_read_s: float = 3.0  # preference and adoption need the drafts read
    min_glance_s: float = 0.8  # a relevance check needs the passage glanced at
    min_overlap: int = 1  # content words a "relevant" passage shares with the ticket


class Judge(Protocol):
    name: str
    # whether training weighs each agent's clicks by their reliability: a judge that keeps
    # every click (off) leaves them equal, so that on/off compares screening as a whole
    weighs_agents: bool

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]: ...


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


@dataclass
class RuleJudge:
    settings: RuleSettings = field(default_factory=RuleSettings)
    name: str = "rules"
    weighs_agents: ClassVar[bool] = True

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]:
        contradictions = _contradictions(events, context)
        return [self._one(e, context, contradictions) for e in events]

    def _one(self, event: StoredFeedback, context: JudgeContext, contradictions) -> Verdict:
        reason = (
            contradictions.get(event.id)
            or self._too_fast(event)
            or self._no_overlap(event, context)
            or _already_shown(event, context)
        )
        return Verdict(event.id, reason is None, reason or "consistent", self.name)

    def _too_fast(self, event: StoredFeedback) -> str | None:
        seconds = (event.clicked_at - event.shown_at).total_seconds()
        needed = self.settings.min_glance_s if event.kind == "relevance" else 0.0
        if event.kind in ("preference", "adoption"):
            needed = self.settings.min_read_s
        if 0 <= seconds < needed:
            return f"clicked {seconds:.1f} s after the drafts were shown (< {needed:.1f} s)"
        return None

    def _no_overlap(self, event: StoredFeedback, context: JudgeContext) -> str | None:
        if event.kind != "relevance" or event.value != "relevant" or not event.chunk_ids:
            return None
        chunk = context.chunks.get(event.chunk_ids[0])
        info = context.sets.get(event.draft_set_id)
        if chunk is None or info is None:
            return None
        # the title names the product or place; sharing only that says nothing
        shared = (content_words(info.query) & content_words(chunk.text)) - content_words(
            chunk.title
        )
        if len(shared) < self.settings.min_overlap:
            return "marked relevant but shares no content word with the ticket"
        return None


UNUSED_FOR_LACK = (
    "marked relevant, yet said the drafts went unused because the knowledge was missing"
)


def _contradictions(events: Sequence[StoredFeedback], context: JudgeContext) -> dict[int, str]:
    """An agent's answers on one card that cannot all be true; the suspect ones, with why.

    Preferred one draft but sent the other as it was: both answers are suspect. Said the drafts
    went unused because the knowledge was missing: a passage the same agent marked relevant on
    that card did not hold the answer after all, so the mark is the doubtful one (the agent's
    reason and the missing article they named are the considered answers; a relevance click is
    the quickest one, and the one mistakes go into). Sent a draft as it was while marking every
    passage it cites not relevant: the answer came from somewhere, so those marks are doubtful
    too, and a doubtful "not relevant" must not teach the retriever to push a passage away.
    """
    found: dict[int, str] = {}
    for (set_id, _), answers in _by_card_and_agent(events).items():
        adopt = answers.get("adoption", [None])[-1]
        if adopt is not None and _unused_for_lack(adopt):
            found.update((e.id, UNUSED_FOR_LACK) for e in answers.get("relevant", ()))
        if adopt is not None and adopt.value == "as_is":
            found.update(_sent_yet_not_relevant(adopt, answers, context.sets.get(set_id)))
        pref = answers.get("preference", [None])[-1]
        if pref is None or adopt is None or adopt.value != "as_is":
            continue
        sent = adopt.rationale.get("label")
        if pref.value in ("A", "B") and sent in ("A", "B") and sent != pref.value:
            why = f"preferred {pref.value} but sent {sent} as it was"
            found[pref.id] = found[adopt.id] = why
        elif pref.value == "both_bad":
            found[pref.id] = found[adopt.id] = "said both drafts were bad, then sent one as it was"
    for event_id, why in _against_the_reply_sent(events).items():
        found.setdefault(event_id, why)
    return found


USED = {"as_is": "used", "edited": "edited"}


def _against_the_reply_sent(events: Sequence[StoredFeedback]) -> dict[int, str]:
    """Adoption clicks that the first reply sent in Zendesk after the drafts contradicts: the
    reply is what happened, so the click is the doubtful answer."""
    sent: dict[int, StoredFeedback] = {}
    for e in events:
        if e.kind == "adoption" and e.subject == SENT_REPLY:
            first = sent.get(e.draft_set_id)
            if first is None or e.clicked_at < first.clicked_at:
                sent[e.draft_set_id] = e
    found = {}
    for e in events:
        reply = sent.get(e.draft_set_id)
        if e.kind == "adoption" and e.subject != SENT_REPLY and reply is not None:
            why = _contradicted(e, reply)
            if why:
                found[e.id] = why
    return found


def _contradicted(click: StoredFeedback, reply: StoredFeedback) -> str | None:
    label, closest = click.rationale.get("label"), reply.rationale.get("label")
    if click.value in USED and (reply.value == "not_used" or closest != label):
        actually = "used neither draft" if reply.value == "not_used" else f"is closest to {closest}"
        return f"said draft {label} was {USED[click.value]}, but the reply sent {actually}"
    if click.value == "not_used" and reply.value == "as_is":
        return f"said no draft was used, but the reply sent is draft {closest} as it was"
    return None


def _sent_yet_not_relevant(
    adopt: StoredFeedback, answers: dict[str, list[StoredFeedback]], info: DraftSetInfo | None
) -> dict[int, str]:
    """The "not relevant" marks on the sources of a draft sent as it was, when they are all
    the agent said about those sources: every one of them cannot be right."""
    label = adopt.rationale.get("label")
    draft = info.drafts.get(label) if info is not None and label else None
    if draft is None or not draft.citations:
        return {}
    sources = set(draft.citations)
    marks = {e.chunk_ids[0]: e for e in answers.get("not_relevant", ()) if e.chunk_ids}
    marked_relevant = {e.chunk_ids[0] for e in answers.get("relevant", ()) if e.chunk_ids}
    if sources & marked_relevant or not sources <= marks.keys():
        return {}
    why = f"marked not relevant, yet sent draft {label}, which cites only such passages, as it was"
    return {marks[c].id: why for c in sources}


def _by_card_and_agent(
    events: Sequence[StoredFeedback],
) -> dict[tuple[int, str], dict[str, list[StoredFeedback]]]:
    """Each agent's answers on each card: the preference, the adoption and the relevance marks
    (under "relevant" and "not_relevant")."""
    slots: dict[tuple[int, str], dict[str, list[StoredFeedback]]] = {}
    for e in events:
        key = e.kind if e.kind in ("preference", "adoption") else None
        if e.kind == "relevance":
            key = e.value
        if key is not None:
            slots.setdefault((e.draft_set_id, e.agent_id), {}).setdefault(key, []).append(e)
    return slots


def _unused_for_lack(adoption: StoredFeedback) -> bool:
    return adoption.value == "not_used" and adoption.rationale.get("reason") == "missing_knowledge"


def _already_shown(event: StoredFeedback, context: JudgeContext) -> str | None:
    """Shown means cited on the card (what the agent saw), not merely given to the generator."""
    if event.kind != "missing_knowledge" or not event.chunk_ids:
        return None
    info = context.sets.get(event.draft_set_id)
    cited = {c for d in info.drafts.values() for c in d.citations} if info else set()
    if event.chunk_ids[0] in cited:
        return "named as missing, but that passage was among the ones shown"
    return None


@dataclass
class NoJudge:
    """Keeps every event (``AITL_JUDGE=off``): what training looks like without a judge."""

    name: str = "off"
    weighs_agents: ClassVar[bool] = False

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]:
        return [Verdict(e.id, True, "not judged", self.name) for e in events]


# --- the LLM judge ------------------------------------------------------------------------


Chat = Callable[[str, str], str]  # (system, user) -> the model's text


@dataclass
class LLMJudge:
    """Asks a chat model about each relevance and preference event; the rules still run first
    (an LLM cannot tell how fast someone clicked), and whatever the LLM does not cover keeps
    the rules' verdict."""

    chat: Chat
    prompts: Callable[[str], str]  # file name -> text, from prompts/
    model: str = "llm"
    rules: RuleJudge = field(default_factory=RuleJudge)
    weighs_agents: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return f"llm:{self.model}"

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]:
        verdicts = []
        for event, ruled in zip(events, self.rules.judge(events, context), strict=True):
            if not ruled.keep or event.kind not in ("relevance", "preference"):
                verdicts.append(ruled)
                continue
            verdicts.append(self._ask(event, context) or ruled)
        return verdicts

    def _ask(self, event: StoredFeedback, context: JudgeContext) -> Verdict | None:
        question = _question(event, context)
        if question is None:
            return None
        system = self.prompts("judge_system.txt")
        user = self.prompts(f"judge_{event.kind}.txt").format(**question)
        try:
            answer = _parse(self.chat(system, user))
        except ValueError:
            return None  # an unreadable answer leaves the rules' verdict
        return Verdict(event.id, answer["keep"], answer["reason"][:300], self.name)


def _question(event: StoredFeedback, context: JudgeContext) -> dict[str, str] | None:
    info = context.sets.get(event.draft_set_id)
    if info is None:
        return None
    if event.kind == "relevance" and event.chunk_ids and event.chunk_ids[0] in context.chunks:
        chunk = context.chunks[event.chunk_ids[0]]
        return {
            "ticket": info.query,
            "passage": f"{chunk.title}\n{chunk.text}",
            "label": event.value.replace("_", " "),
        }
    if event.kind == "preference" and {"A", "B"} <= set(info.drafts):
        return {
            "ticket": info.query,
            "draft_a": info.drafts["A"].text,
            "draft_b": info.drafts["B"].text,
            "label": event.value.replace("_", " "),
        }
    return None


def _parse(text: str) -> dict:
    """The first JSON object in the answer, with a boolean 'keep' and a 'reason'."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the judge's answer")
    data = json.loads(text[start : end + 1])
    if not isinstance(data.get("keep"), bool):
        raise ValueError("the judge's answer has no boolean 'keep'")
    return {"keep": data["keep"], "reason": str(data.get("reason") or "llm judge")}
