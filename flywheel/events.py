"""The events API: the one door from the surfaces (the Slack bot) into the flywheel.

A surface records a click (or a modal closed unsent) and reads the clicks standing on a card,
or an agent's own figures, through these names and nothing else of the flywheel; the values
are in ``flywheel.feedback`` and the SQL in ``flywheel.store``. Everything else the bot shows
of the flywheel (the model registry, queued model changes, the digest) reaches it through
ports the composition root wires (``bot.ports``).
"""

from __future__ import annotations

from flywheel.feedback import VALUES, AgentStats, Dismissal, Feedback, Kind, StoredFeedback
from flywheel.store import agent_stats, current, record, record_dismissal

__all__ = [
    "VALUES",
    "AgentStats",
    "Dismissal",
    "Feedback",
    "Kind",
    "StoredFeedback",
    "agent_stats",
    "current",
    "record",
    "record_dismissal",
]
