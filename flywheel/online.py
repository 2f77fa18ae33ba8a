"""The online decision between the champion generator and its challenger, from agents' clicks.

On ``AITL_CHALLENGER_SHARE`` of the tickets, drafts A and B come from the champion and the
challenger. Each such card is a duel: the agent's Prefer click scores it for the challenger
(1 preferred, 0 the champion's draft, a tie half; "both bad" says nothing about which is
better and is left out), and which draft was used (as is or edited; the reply sent in
Zendesk where it was compared) is a second signal. ``flywheel.sequential`` tests each signal
with an always-valid mixture SPRT whose error rates are fixed in settings, so checking often
(the scheduler's ``AITL_DUEL_CRON``; the demo after each week) spends no extra error. A card
counts once: the latest preference standing on it.

The decision, made once per pair (``duel_decisions``):

- **promote** when the preferences say the challenger is better, the adoptions do not say it
  is worse, and no agent pool (a Slack channel the cards were answered in) says it is worse;
- **retire** when the preferences or the adoptions say it is worse, when a pool says it is
  worse although the pooled preferences say better (that team should not get it), or when the
  preferences reach ``AITL_DUEL_MAX`` duels without a decision ("no difference detected": the
  champion, already serving, stays).

So a challenger no better than the champion is promoted with a probability of at most
``AITL_DUEL_ALPHA`` / 2, and is retired, wrongly, at most about 2 × ``AITL_DUEL_ALPHA`` of
the time (two signals); ``benchmarks/duels.py`` measures both. A retired challenger stops
being drafted; the next adapter a cycle trains becomes the challenger.

The reply from a similar ticket (``rag.memory.REUSED_REPLY``, offered by the feedback memory
in the place of the champion's second style) is read as one more challenger of the champion,
by the same tests on its own duels: **retired** when they say it is worse (it is no longer
offered beside that champion), **kept** when they say it is better or no different (there is
nothing to promote: it goes on being offered, and the test stops). Its card says where its
text came from, so its preferences are not blind as the generators' are; the adoptions are.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from psycopg.types.json import Jsonb

from aitl.core.db import Database
from aitl.core.settings import Settings
from flywheel import store
from flywheel.feedback import SENT_REPLY
from flywheel.registry import Registry
from flywheel.sequential import SequentialPolicy, SequentialState, test_duels
from flywheel.serving import challengers, names, served
from rag import factory
from rag import store as rag_store
from rag.memory import REUSED_REPLY

log = logging.getLogger(__name__)
# "keep": the reused reply's test decided it is not worse; it goes on being offered
Action = Literal["promote", "retire", "keep", "running"]


def policy_of(settings: Settings) -> SequentialPolicy:
    return SequentialPolicy(
        alpha=settings.duel_alpha,
        tau=settings.duel_tau,
        min_duels=settings.duel_min,
        max_duels=settings.duel_max,
    )


@dataclass(frozen=True)
class Outcomes:
    """A pair's duels, oldest first: what the sequential tests read."""

    preference: list[float] = field(default_factory=list)
    adoption: list[float] = field(default_factory=list)
    pools: dict[str, list[float]] = field(default_factory=dict)  # channel → preferences


def outcomes(sets: list[rag_store.DuelSet], answers: list[store.DuelAnswer]) -> Outcomes:
    """Each standing Prefer click on a duel's card, scored for the challenger; each adoption of
    one of its two drafts (one per card: the reply sent in Zendesk over an agent's click)."""
    by_set = {s.draft_set_id: s for s in sets}
    preferences: dict[int, tuple] = {}
    adoptions: dict[int, tuple] = {}
    for a in sorted(answers, key=lambda a: a.clicked_at):
        duel = by_set.get(a.draft_set_id)
        if duel is None:
            continue
        if a.kind == "preference":
            # one duel per card: two agents' answers on one card are not independent draws
            preferences.pop(a.draft_set_id, None)
            if a.value != "both_bad":
                score = 0.5 if a.value == "tie" else float(a.value == duel.challenger_label)
                preferences[a.draft_set_id] = (a.clicked_at, score, a.channel or "direct")
        elif a.kind == "adoption" and a.value != "not_used" and a.draft_id is not None:
            if a.draft_id not in (duel.champion_draft, duel.challenger_draft):
                continue
            score = float(a.draft_id == duel.challenger_draft)
            sent = a.subject == SENT_REPLY
            held = adoptions.get(a.draft_set_id)
            if held is None or sent or not held[2]:
                adoptions[a.draft_set_id] = (a.clicked_at, score, sent)
    preferred = sorted(preferences.values(), key=lambda t: t[0])
    pools: dict[str, list[float]] = defaultdict(list)
    for _, score, pool in preferred:
        pools[pool].append(score)
    adopted = sorted(adoptions.values(), key=lambda t: t[0])
    return Outcomes([s for _, s, _ in preferred], [s for _, s, _ in adopted], dict(pools))


@dataclass(frozen=True)
class Duel:
    """The running duel of one generator pair, and what it says to do."""

    champion: str
    challenger: str
    preference: SequentialState
    adoption: SequentialState
    pools: dict[str, SequentialState]
    action: Action
    reason: str
    verdict: str = "running"  # what the evidence says: better, worse or no_difference
    decided: str | None = None  # set when this pair was already decided: what was done

    def figures(self) -> dict:
        def of(state: SequentialState) -> dict:
            return {
                "duels": state.duels,
                "win_rate": state.win_rate,
                "low": state.low,
                "high": state.high,
                "statistic": round(state.statistic, 3),
                "threshold": state.threshold,
                "verdict": state.verdict,
            }

        return {
            "preference": of(self.preference),
            "adoption": of(self.adoption),
            "pools": {pool: of(state) for pool, state in self.pools.items()},
        }


def judge(champion: str, challenger: str, seen: Outcomes, policy: SequentialPolicy) -> Duel:
    """The tests' states and the action they call for (see the module docstring)."""
    preference = test_duels(seen.preference, policy)
    adoption = test_duels(seen.adoption, policy)
    pools = {pool: test_duels(scores, policy) for pool, scores in sorted(seen.pools.items())}
    said = (
        f"preferences: {preference.describe()}; adoptions:"
        f" {adoption.describe('challenger’s draft used', 'adoption')}"
    )
    against = [pool for pool, state in pools.items() if state.verdict == "worse"]
    action: Action = "running"
    verdict = "running"
    if preference.verdict == "worse" or adoption.verdict == "worse":
        action, verdict, why = "retire", "worse", "worse than the champion"
    elif preference.verdict == "no_difference":
        action, verdict = "retire", "no_difference"
        why = f"no difference detected in {preference.duels} duels"
    elif preference.verdict == "better" and against:
        # a team for whom it is worse should not get it; both tests are final, so waiting
        # would keep it drafting for ever
        action, verdict = "retire", "worse"
        why = f"better overall but worse for the agents in {', '.join(against)}"
    elif preference.verdict == "better":
        action, verdict, why = "promote", "better", "better than the champion"
    else:
        why = "no decision yet"
    reason = f"{why} ({said})"
    return Duel(champion, challenger, preference, adoption, pools, action, reason, verdict)


def judge_reuse(champion: str, seen: Outcomes, policy: SequentialPolicy) -> Duel:
    """As ``judge``, for the reply from a similar ticket: only "worse" retires it; "better"
    or "no difference" keep it offered (it replaces no model)."""
    duel = judge(champion, REUSED_REPLY, seen, policy)
    if duel.verdict in ("better", "no_difference"):
        return dataclasses.replace(duel, action="keep")
    return duel


class OnlineDecision:
    """Reads the live pair's duels, and promotes or retires the challenger when they decide."""

    def __init__(self, settings: Settings, db: Database, registry: Registry) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.policy = policy_of(settings)

    @classmethod
    def reading(cls, settings: Settings, db: Database) -> OnlineDecision:
        """One that reads the test, for App Home and the digest (a registry of its own)."""
        return cls(settings, db, Registry(db, factory.embedding_versions(settings, db)))

    def pair(self) -> tuple[str, str] | None:
        """The champion and challenger drafts are made with now (None: no challenger)."""
        choice = served(self.settings, self.registry.list())
        champion, challenger = names(choice)
        return (champion, challenger) if challenger else None

    def state(self, until: datetime | None = None) -> Duel | None:
        """The running duel, for App Home, the digest (``until`` its week's end) and the
        demo."""
        pair = self.pair()
        return self.duel(*pair, until=until) if pair else None

    def reuse_state(self, until: datetime | None = None) -> Duel | None:
        """The reply from a similar ticket against the live champion (None: the reuse is
        off)."""
        s = self.settings
        if not (s.memory_enabled and s.memory_replies_enabled):
            return None
        champion, _ = names(served(self.settings, self.registry.list()))
        return self.duel(champion, REUSED_REPLY, until=until)

    def duel(self, champion: str, challenger: str, *, until: datetime | None = None) -> Duel:
        with self.db.connection() as conn:
            sets = rag_store.duel_sets(conn, champion, challenger)
            answers = store.duel_answers(conn, [s.draft_set_id for s in sets], until)
            decided = store.duel_decision(conn, champion, challenger)
        seen = outcomes(sets, answers)
        if challenger == REUSED_REPLY:
            duel = judge_reuse(champion, seen, self.policy)
        else:
            duel = judge(champion, challenger, seen, self.policy)
        return dataclasses.replace(duel, decided=decided) if decided else duel

    def check(self) -> Duel | None:
        """Act on the live pair's duel if its test has decided, else on the reused reply's;
        returns the duel when it acted, else None."""
        duel = self.state()
        if duel is None or duel.action == "running" or duel.decided:
            return self._check_reuse()
        reason = f"online A/B: {duel.reason}"
        if duel.challenger == factory.SHIPPED_LLM:  # the registry acts on rows only
            register_untrained_llm(self.settings, self.db, "challenger", reason)
        if duel.action == "promote":
            self.registry.promote("generator", duel.challenger, reason)
        else:
            self.registry.retire("generator", duel.challenger, reason)
        self._next_in_line()
        self._record(duel, "promoted" if duel.action == "promote" else "retired", reason)
        log.info("online decision: %s %s", duel.action, reason)
        return duel

    def _check_reuse(self) -> Duel | None:
        """Record the reused reply's decision once its test has made one: a retired reuse is
        no longer offered beside this champion (``flywheel.memory_replies.offered`` reads the
        decision); no registry row changes."""
        duel = self.reuse_state()
        if duel is None or duel.action == "running" or duel.decided:
            return None
        reason = f"online A/B: {duel.reason}"
        self._record(duel, "retired" if duel.action == "retire" else "kept", reason)
        log.info("online decision on the reused replies: %s %s", duel.action, reason)
        return duel

    def _record(self, duel: Duel, action: str, reason: str) -> None:
        """The pair's decision, once (``duel_decisions``), with the test's figures."""
        with self.db.connection() as conn:
            store.record_duel_decision(
                conn,
                champion=duel.champion,
                challenger=duel.challenger,
                verdict=duel.verdict,
                action=action,
                duels=duel.preference.duels,
                figures=Jsonb(duel.figures()),
                reason=reason,
            )

    def _next_in_line(self) -> None:
        """The newest adapter waiting becomes the challenger; older ones waiting retire."""
        waiting = challengers(self.registry.list())
        if len(waiting) > 1:
            newest = waiting[-1].version
            with self.db.connection() as conn:
                store.retire_older_challengers(
                    conn, "generator", newest, f"superseded by {newest} while waiting"
                )


def register_untrained_llm(settings: Settings, db: Database, status: str, reason: str) -> None:
    """The untrained LLM has no registry row until the test decides on it or a cycle's adapter
    queues behind it (``llm-base``); one it has already is left as it is."""
    with db.connection() as conn:
        if store.model(conn, "generator", factory.SHIPPED_LLM) is None:
            store.add_model(
                conn,
                kind="generator",
                version=factory.SHIPPED_LLM,
                path=str(factory.llm_model_path(settings)),
                status=status,
                decision=reason,
            )


def summary(duel: Duel) -> dict:
    """The duel as the digest stores it (plain data)."""
    p = duel.preference
    return {
        "champion": duel.champion,
        "challenger": duel.challenger,
        "duels": p.duels,
        "win_rate": p.win_rate,
        "low": p.low,
        "high": p.high,
        "verdict": p.verdict,
        "adoptions": duel.adoption.duels,
        "adoption_rate": duel.adoption.win_rate,
        "state": duel.reason,
        "decided": duel.decided,
    }


def note(duel: Duel, next_challenger: str | None = None) -> str:
    """What admins are told when the online test acts, and what drafts beside it now."""
    if duel.challenger == REUSED_REPLY:
        return reuse_note(duel)
    done = "promoted" if duel.action == "promote" else "retired"
    serving = (
        f"`{duel.challenger}` drafts as the champion from now on"
        if duel.action == "promote"
        else f"`{duel.champion}` stays the champion"
    )
    after = (
        f"`{next_challenger}`, which waited its turn, is the challenger now"
        if next_challenger
        else "the next adapter a cycle trains becomes the challenger"
    )
    return (
        f"Online A/B test: challenger `{duel.challenger}` {done}. {duel.reason}."
        f" {serving}; {after}."
    )


def reuse_note(duel: Duel) -> str:
    """What admins are told when the test of the replies from similar tickets decides."""
    if duel.action == "retire":
        return (
            f"Online A/B test: replies from similar tickets retired beside `{duel.champion}`."
            f" {duel.reason}. Near-identical tickets get the champion's two drafts again."
        )
    return (
        f"Online A/B test: replies from similar tickets kept beside `{duel.champion}`."
        f" {duel.reason}. Near-identical tickets go on being offered them."
    )
