"""Adoption read from the reply the agent actually sent, compared with both drafts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from rag import links


@dataclass(frozen=True)
class DerivedAdoption:
    closest_label: str
    similarity_a: float
    similarity_b: float
    adoption: str  # 'as_is' | 'edited' | 'not_used'


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def similarity(sent: str, draft: str) -> float:
    """1 - normalised edit distance, approximated by difflib's ratio on words; links count by
    their text, since Zendesk's plain_body of a sent reply drops the URLs a draft holds."""
    a, b = normalise(links.plain(sent)).split(), normalise(links.plain(draft)).split()
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def derive(sent: str, drafts: dict[str, str], *, as_is: float, edited: float) -> DerivedAdoption:
    scores = {label: similarity(sent, text) for label, text in drafts.items()}
    closest = max(sorted(scores), key=lambda label: scores[label])
    best = scores[closest]
    adoption = "as_is" if best >= as_is else "edited" if best >= edited else "not_used"
    return DerivedAdoption(closest, scores.get("A", 0.0), scores.get("B", 0.0), adoption)
