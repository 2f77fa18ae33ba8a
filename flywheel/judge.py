"""The virtual judge: screens every feedback event before training, with a verdict and a reason.

Without an LLM, rules catch what a careful reviewer would: an agent contradicting themselves
(preferred A but sent B; "relevant" on a card whose drafts went unused for lack of knowledge;
"not relevant" on every passage of the draft they then sent as it was), an adoption click the
reply actually sent in Zendesk contradicts, clicks too fast to have read anything, "relevant"
on a passage that stood far below the card's other passages for the ticket (calibrated on the
marks other answers back) or that shares no word with it, "missing" knowledge that was in fact
shown. Every rule runs on every event, so each one's share can be watched on its own
(``flywheel.judge_watch``). With ``AITL_JUDGE=llm`` a chat model (an endpoint, or the local
LLM) also reads each relevance and preference event through ``prompts/judge_*.txt`` and
answers "keep" or "drop" with a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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


# Every rule the rule judge runs, by the name verdicts, runs and reports use, with what it doubts.
RULES: dict[str, str] = {
    "too_fast": "clicked before the drafts (or the passage) could have been read",
    "preference_vs_sent": "preferred one draft, or said both were bad, then sent a draft as it was",
    "reply_sent_disagrees": "an adoption click that the reply sent in Zendesk contradicts",
    "unused_for_lack": "marked relevant on a card the same agent left unused for lack of knowledge",
    "not_relevant_yet_sent": "marked not relevant every source of a draft then sent as it was",
    "off_topic": "marked relevant a passage ranked far below the card's others for the ticket",
    "no_shared_words": "marked relevant a passage sharing no content word with the ticket",
    "already_shown": "named as missing a passage that was cited on the card",
}
LLM_RULE = "llm"  # the LLM judge's own verdicts, beside the rules'


@dataclass(frozen=True)
class Verdict:
    event_id: int
    keep: bool
    reason: str
    judge: str
    # every rule that doubted the event, in RULES order; ``reason`` is the first one's
    rules: tuple[str, ...] = ()

    @property
    def rule(self) -> str | None:
        """The rule the event is counted under: the first that doubted it."""
        return self.rules[0] if self.rules else None


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
    # off_topic: a "relevant" mark whose passage stands lower among the card's passages than
    # this share of the marks agents agreed on is doubted; with fewer agreed marks than
    # ``semantic_min_agreed`` the rule abstains (there is nothing to calibrate on)
    semantic_quantile: float = 0.05
    semantic_min_agreed: int = 20
    disabled: frozenset[str] = frozenset()  # rules not run (e.g. one that drops too much)


class Judge(Protocol):
    name: str
    # whether training weighs each agent's clicks by their reliability: a judge that keeps
    # every click (off) leaves them equal, so that on/off compares screening as a whole
    weighs_agents: bool

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]: ...

    def ran(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[str]:
        """The rules that could judge these events (enabled, and calibrated where they need
        it): a rule that did not run has no share to compare with its history."""
        ...

    def without(self, rules: Sequence[str]) -> Judge:
        """The same judge with ``rules`` left out (the LLM judge's own verdicts are "llm")."""
        ...


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


Doubts = dict[int, str]  # event id → why a rule doubts it


@dataclass
class RuleJudge:
    """Runs every rule on every event (so each rule's share can be measured on its own); an
    event any rule doubts is dropped, with the first rule's reason."""

    settings: RuleSettings = field(default_factory=RuleSettings)
    name: str = "rules"
    weighs_agents: ClassVar[bool] = True

    def judge(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[Verdict]:
        doubts = self.doubts(events, context)
        verdicts = []
        for e in events:
            fired = tuple(rule for rule in RULES if e.id in doubts.get(rule, {}))
            reason = doubts[fired[0]][e.id] if fired else "consistent"
            verdicts.append(Verdict(e.id, not fired, reason, self.name, fired))
        return verdicts

    def doubts(self, events: Sequence[StoredFeedback], context: JudgeContext) -> dict[str, Doubts]:
        """Each enabled rule's doubts, by rule name."""
        s = self.settings
        found: dict[str, Doubts] = {rule: {} for rule in RULES if rule not in s.disabled}
        for rule, event_id, why in _contradictions(events, context):
            if rule in found:
                found[rule].setdefault(event_id, why)
        floor = self.floor(events, context) if "off_topic" in found else None
        for e in events:
            checks = {
                "too_fast": lambda e=e: self._too_fast(e),
                "off_topic": lambda e=e: _off_topic(e, context, floor),
                "no_shared_words": lambda e=e: self._no_shared_words(e, context),
                "already_shown": lambda e=e: _already_shown(e, context),
            }
            for rule, check in checks.items():
                if rule in found and (why := check()) is not None:
                    found[rule][e.id] = why
        return found

    def without(self, rules: Sequence[str]) -> RuleJudge:
        disabled = self.settings.disabled | frozenset(rules)
        return replace(self, settings=replace(self.settings, disabled=disabled))

    def ran(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[str]:
        found = [rule for rule in RULES if rule not in self.settings.disabled]
        if "off_topic" in found and self.floor(events, context) is None:
            found.remove("off_topic")
        return found

    def floor(
        self, events: Sequence[StoredFeedback], context: JudgeContext
    ) -> SemanticFloor | None:
        """The off_topic rule's threshold, calibrated on the window's agreed "relevant" marks."""
        standing = [_standing(e, context) for e in agreed_relevant(events, context)]
        standing = sorted(z for z in standing if z is not None)
        if len(standing) < self.settings.semantic_min_agreed:
            return None
        at = min(len(standing) - 1, int(self.settings.semantic_quantile * len(standing)))
        return SemanticFloor(standing[at], self.settings.semantic_quantile, len(standing))

    def _too_fast(self, event: StoredFeedback) -> str | None:
        seconds = (event.clicked_at - event.shown_at).total_seconds()
        needed = self.settings.min_glance_s if event.kind == "relevance" else 0.0
        if event.kind in ("preference", "adoption"):
            needed = self.settings.min_read_s
        if 0 <= seconds < needed:
            return f"clicked {seconds:.1f} s after the drafts were shown (< {needed:.1f} s)"
        return None

    def _no_shared_words(self, event: StoredFeedback, context: JudgeContext) -> str | None:
        """Lexical, title included: a question-titled article shares the ticket's words in its
        title, an entity-titled passage its name; sharing nothing at all is what is doubted."""
        found = _marked_relevant(event, context)
        if found is None:
            return None
        info, chunk = found
        shared = content_words(info.query) & content_words(f"{chunk.title} {chunk.text}")
        if len(shared) < self.settings.min_overlap:
            return "marked relevant but shares no content word with the ticket"
        return None


@dataclass(frozen=True)
class SemanticFloor:
    """The lowest standing a "relevant" passage may have among its card's passages: the
    ``quantile`` of the standings of ``agreed`` marks agents agreed on."""

    standing: float
    quantile: float
    agreed: int


def standing(similarity: dict[int, float], chunk_id: int) -> float | None:
    """How far the passage's similarity to the ticket stands above the card's other passages,
    in standard deviations (a z-score over every passage the retriever found for the card).
    Relative to its card, so a short query's low cosines and a retrained retriever's scale
    compare alike; None when the passage was not retrieved or the card has too few."""
    if chunk_id not in similarity or len(similarity) < 3:
        return None
    values = list(similarity.values())
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return (similarity[chunk_id] - mean) / sd if sd > 1e-9 else None


def _standing(event: StoredFeedback, context: JudgeContext) -> float | None:
    info = context.sets.get(event.draft_set_id)
    if info is None or not event.chunk_ids:
        return None
    return standing(info.similarity, event.chunk_ids[0])


def agreed_relevant(
    events: Sequence[StoredFeedback], context: JudgeContext
) -> list[StoredFeedback]:
    """The "relevant" marks another answer backs: a source of the draft the same agent used
    (sent as it was or edited), or a passage a second agent also marked relevant on the card."""
    used: dict[tuple[int, str], set[int]] = {}
    for e in events:
        if e.kind == "adoption" and e.value in USED:
            info = context.sets.get(e.draft_set_id)
            draft = info.drafts.get(e.rationale.get("label")) if info else None
            if draft is not None:
                used.setdefault((e.draft_set_id, e.agent_id), set()).update(draft.citations)
    marks = [e for e in events if e.kind == "relevance" and e.value == "relevant" and e.chunk_ids]
    markers: dict[tuple[int, int], set[str]] = {}
    for e in marks:
        markers.setdefault((e.draft_set_id, e.chunk_ids[0]), set()).add(e.agent_id)
    return [
        e
        for e in marks
        if e.chunk_ids[0] in used.get((e.draft_set_id, e.agent_id), ())
        or len(markers[(e.draft_set_id, e.chunk_ids[0])]) > 1
    ]


def _marked_relevant(
    event: StoredFeedback, context: JudgeContext
) -> tuple[DraftSetInfo, ChunkRef] | None:
    if event.kind != "relevance" or event.value != "relevant" or not event.chunk_ids:
        return None
    chunk = context.chunks.get(event.chunk_ids[0])
    info = context.sets.get(event.draft_set_id)
    return None if chunk is None or info is None else (info, chunk)


def _off_topic(
    event: StoredFeedback, context: JudgeContext, floor: SemanticFloor | None
) -> str | None:
    if floor is None or _marked_relevant(event, context) is None:
        return None
    z = _standing(event, context)
    if z is None or z >= floor.standing:
        return None
    return (
        f"marked relevant, but it stood {z:+.2f} s.d. among the card's passages for the ticket,"
        f" below {floor.standing:+.2f} (the lowest {floor.quantile:.0%} of {floor.agreed}"
        " marks agents agreed on)"
    )


UNUSED_FOR_LACK = (
    "marked relevant, yet said the drafts went unused because the knowledge was missing"
)


def _contradictions(
    events: Sequence[StoredFeedback], context: JudgeContext
) -> list[tuple[str, int, str]]:
    """An agent's answers on one card that cannot all be true; the suspect ones, as (rule,
    event id, why).

    Preferred one draft but sent the other as it was: both answers are suspect. Said the drafts
    went unused because the knowledge was missing: a passage the same agent marked relevant on
    that card did not hold the answer after all, so the mark is the doubtful one (the agent's
    reason and the missing article they named are the considered answers; a relevance click is
    the quickest one, and the one mistakes go into). Sent a draft as it was while marking every
    passage it cites not relevant: the answer came from somewhere, so those marks are doubtful
    too, and a doubtful "not relevant" must not teach the retriever to push a passage away.
    """
    found: list[tuple[str, int, str]] = []
    for (set_id, _), answers in _by_card_and_agent(events).items():
        adopt = answers.get("adoption", [None])[-1]
        if adopt is not None and _unused_for_lack(adopt):
            found.extend(
                ("unused_for_lack", e.id, UNUSED_FOR_LACK) for e in answers.get("relevant", ())
            )
        if adopt is not None and adopt.value == "as_is":
            sent = _sent_yet_not_relevant(adopt, answers, context.sets.get(set_id), context.chunks)
            found.extend(("not_relevant_yet_sent", event_id, why) for event_id, why in sent.items())
        pref = answers.get("preference", [None])[-1]
        if pref is None or adopt is None or adopt.value != "as_is":
            continue
        sent_label = adopt.rationale.get("label")
        why = None
        if pref.value in ("A", "B") and sent_label in ("A", "B") and sent_label != pref.value:
            why = f"preferred {pref.value} but sent {sent_label} as it was"
        elif pref.value == "both_bad":
            why = "said both drafts were bad, then sent one as it was"
        if why:
            found.extend(("preference_vs_sent", event_id, why) for event_id in (pref.id, adopt.id))
    found.extend(
        ("reply_sent_disagrees", event_id, why)
        for event_id, why in _against_the_reply_sent(events).items()
    )
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
    adopt: StoredFeedback,
    answers: dict[str, list[StoredFeedback]],
    info: DraftSetInfo | None,
    chunks: dict[int, ChunkRef],
) -> dict[int, str]:
    """The "not relevant" mark on the source a draft sent as it was came from, when the agent
    called every source of that draft not relevant: they cannot all be right, and the one the
    draft's words came from (the most content words shared with it; all of them on a tie) is
    the doubtful one, the others' marks may well be right."""
    label = adopt.rationale.get("label")
    draft = info.drafts.get(label) if info is not None and label else None
    if draft is None or not draft.citations:
        return {}
    sources = set(draft.citations)
    marks = {e.chunk_ids[0]: e for e in answers.get("not_relevant", ()) if e.chunk_ids}
    marked_relevant = {e.chunk_ids[0] for e in answers.get("relevant", ()) if e.chunk_ids}
    if sources & marked_relevant or not sources <= marks.keys():
        return {}
    said = content_words(draft.text)
    shared = {c: len(said & content_words(chunks[c].text)) if c in chunks else 0 for c in sources}
    most = max(shared.values())
    why = (
        f"marked not relevant, yet sent draft {label} as it was, whose words came from this"
        " passage (every passage it cites was marked not relevant)"
    )
    return {marks[c].id: why for c in sources if shared[c] == most}


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

    def ran(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[str]:
        return []

    def without(self, rules: Sequence[str]) -> NoJudge:
        return self


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

    def ran(self, events: Sequence[StoredFeedback], context: JudgeContext) -> list[str]:
        return [*self.rules.ran(events, context), LLM_RULE]

    def without(self, rules: Sequence[str]) -> Judge:
        if LLM_RULE in rules:
            return self.rules.without([r for r in rules if r != LLM_RULE])
        return replace(self, rules=self.rules.without(rules))

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
        from rag.exceptions import GenerationError

        try:
            answer = _parse(self.chat(system, user))
        except ValueError:
            return None  # an unreadable answer leaves the rules' verdict
        except GenerationError:
            return None  # so does a question longer than a local model's context
        doubted = () if answer["keep"] else (LLM_RULE,)
        return Verdict(event.id, answer["keep"], answer["reason"][:300], self.name, doubted)


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


# the verdict word opening an answer, after markup or an "Answer:" a model may put before it
_VERDICT = re.compile(
    r"""[\s*_"'`#>-]*(?:(?:answer|verdict|decision)\s*[:-]\s*[\s*_"'`]*)?(keep|drop)\b(.*)""",
    re.IGNORECASE | re.DOTALL,
)
_ECHO = re.compile(r"""[\s*_"'`,]*(?:/|or\b)""", re.IGNORECASE)  # "keep or drop": the question


def _parse(text: str) -> dict:
    """The judge's verdict: the answer's first word, keep or drop, then a short reason (what a
    small local model can write); or a JSON object with a boolean 'keep' and a 'reason' (what
    an endpoint may write). Anything else, "keep or drop" echoed from the question included,
    is unreadable (ValueError), and the rules' verdict stands."""
    match = _VERDICT.match(text)
    if match is None or _ECHO.match(match[2]):
        found = _json_verdict(text)
        if found is None:
            raise ValueError("the judge's answer opens with neither keep nor drop, nor has JSON")
        return found
    lines = [line.strip(" \t-\u2013\u2014:.,;*_\"'`") for line in match[2].splitlines()]
    reason = next((line for line in lines if line), "no reason given")
    return {"keep": match[1].lower() == "keep", "reason": reason}


def _json_verdict(text: str) -> dict | None:
    """The first JSON object in the answer, when it holds a boolean 'keep'."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("keep"), bool):
        return None
    return {"keep": data["keep"], "reason": str(data.get("reason") or "llm judge")}
