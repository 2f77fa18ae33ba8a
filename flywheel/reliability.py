"""How much to trust each agent: agreement with the judge and with peers on the same passages.

The paper leaves novice vs expert annotators open; here each agent's training weight is
``0.5 + judge agreement × peer agreement`` (peer agreement 1 when nobody else judged the same
passages), so a perfectly consistent agent counts up to three times an unreliable one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from flywheel.events import StoredFeedback
from flywheel.judge import Verdict


@dataclass(frozen=True)
class AgentReliability:
    agent_id: str
    events: int
    judge_agreement: float
    peer_agreement: float | None
    weight: float


def estimate(
    events: Sequence[StoredFeedback], verdicts: Sequence[Verdict]
) -> dict[str, AgentReliability]:
    kept = {v.event_id: v.keep for v in verdicts}
    per_agent: dict[str, list[StoredFeedback]] = defaultdict(list)
    for event in events:
        per_agent[event.agent_id].append(event)
    peers = _peer_agreement(events)
    result = {}
    for agent, own in per_agent.items():
        judged = sum(kept.get(e.id, True) for e in own) / len(own)
        peer = peers.get(agent)
        weight = round(0.5 + judged * (peer if peer is not None else 1.0), 4)
        result[agent] = AgentReliability(agent, len(own), round(judged, 4), peer, weight)
    return result


def _peer_agreement(events: Sequence[StoredFeedback]) -> dict[str, float]:
    """Share of an agent's relevance labels that match the other agents' majority per chunk."""
    labels: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        if e.kind == "relevance" and e.chunk_ids:
            labels[e.chunk_ids[0]].append((e.agent_id, e.value))
    agree: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for votes in labels.values():
        for agent, value in votes:
            others = Counter(v for a, v in votes if a != agent)
            if not others:
                continue
            majority, count = others.most_common(1)[0]
            if count * 2 == sum(others.values()):
                continue  # a tie among peers says nothing
            total[agent] += 1
            agree[agent] += value == majority
    return {agent: agree[agent] / total[agent] for agent in total}
