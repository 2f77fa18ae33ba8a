"""Reviews of the virtual judge: a small sample of the latest cycle's verdicts for a reviewer
(an admin or a manager, in App Home) to agree with or not, and how far the judge agrees with
its reviewers, as Cohen's kappa with its n, the way evaluation tools report an LLM judge
against human labels.

The sample is seeded (``AITL_FLYWHEEL_SEED``): every reviewer sees the verdicts in the same
order, and answering one leaves the others where they were. It takes drops and keeps half and
half where there are enough of each, the drops spread over the rules that made them and the
keeps over the kinds of click, so a reviewer checks every rule rather than the commonest one.

Kappa compares two labels per review: the judge's (kept or dropped) and the reviewer's, which
is the judge's when they agree and the other one when they do not. When both sides gave one
label only, kappa is undefined (0 / 0): the agreement is then reported as a plain share.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from flywheel import store
from flywheel.store import ReviewCandidate
from rag import store as rag_store

QUERY_CHARS, EXCERPT_CHARS, LINE_CHARS, NOTE_CHARS = 300, 200, 160, 200
# a draft's opening lines that say nothing of its content ("Hi there,", "Thanks for getting
# in touch about …"): the first lines shown are those after them
GREETING = re.compile(
    r"^(hi|hello|hey|dear|good (morning|afternoon|evening))\b[^.!?]{0,40}[,!]?$"
    r"|^thanks? (you )?for (getting in touch|reaching out|contacting)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReviewItem:
    """One verdict as a reviewer sees it: the ticket, the click, and what the judge said."""

    run_id: int
    event_id: int
    kind: str  # relevance, missing_knowledge, preference, adoption
    value: str  # the click: 'relevant', 'article', 'A', 'as_is', …
    keep: bool  # the judge's verdict
    reason: str
    agent_id: str
    clicked_at: datetime
    query: str  # the ticket as drafted (redacted when it was captured)
    passage: str | None = None  # the passage marked or named as missing: its title
    excerpt: str | None = None  # and the start of its text
    chosen: str | None = None  # the draft preferred or used, A or B
    drafts: dict[str, str] = field(default_factory=dict)  # label → the draft's first lines
    note: str | None = None  # a URL or note named as missing; an adoption's reason


def review_queue(
    conn: psycopg.Connection,
    reviewer: str,
    *,
    size: int,
    seed: int,
    shown: Callable[[set[int]], set[int]],
) -> tuple[int | None, list[ReviewItem]]:
    """The latest succeeded cycle and up to ``size`` of its verdicts for ``reviewer``: none
    they reviewed already, only clicks on a card that still exists (``shown`` keeps, of the
    draft sets given, those a card shows). (None, []) before any cycle succeeded."""
    run_id = store.latest_succeeded_run(conn)
    if run_id is None:
        return None, []
    # each bucket gives the sample at most ``size``; twice that covers cards that are gone
    candidates = store.review_candidates(conn, run_id, reviewer, seed=seed, per_bucket=2 * size)
    with_cards = shown({c.draft_set_id for c in candidates}) if candidates else set()
    picked = sample([c for c in candidates if c.draft_set_id in with_cards], size)
    return run_id, describe(conn, picked)


def sample(candidates: Sequence[ReviewCandidate], size: int) -> list[ReviewCandidate]:
    """Up to ``size`` candidates, half drops and half keeps where there are enough of each
    (the odd one a drop), each half spread over its buckets; in the seeded order."""
    drops = [c for c in candidates if not c.keep]
    keeps = [c for c in candidates if c.keep]
    n_drops = min(len(drops), (size + 1) // 2)
    n_keeps = min(len(keeps), size - n_drops)
    n_drops = min(len(drops), size - n_keeps)  # keeps too few: more drops
    return sorted(_spread(drops, n_drops) + _spread(keeps, n_keeps), key=_order)


def _order(candidate: ReviewCandidate) -> tuple[str, int]:
    return candidate.sample_key, candidate.event_id


def _spread(items: Sequence[ReviewCandidate], n: int) -> list[ReviewCandidate]:
    """``n`` of ``items`` taken from each bucket in turn: every bucket's first (in the seeded
    order), then every bucket's second, and so on."""
    buckets: dict[str, list[ReviewCandidate]] = {}
    for item in sorted(items, key=_order):
        buckets.setdefault(item.bucket, []).append(item)
    taken: list[ReviewCandidate] = []
    depth = 0
    while len(taken) < min(n, len(items)):
        for bucket in buckets.values():
            if depth < len(bucket) and len(taken) < n:
                taken.append(bucket[depth])
        depth += 1
    return taken


def describe(conn: psycopg.Connection, picked: Sequence[ReviewCandidate]) -> list[ReviewItem]:
    """What a reviewer needs to decide on each verdict: the ticket, the passage or the drafts
    the click is about, and the judge's verdict with its reason."""
    sets = rag_store.draft_set_infos(conn, sorted({c.draft_set_id for c in picked}))
    chunks = rag_store.chunk_refs(conn, sorted({i for c in picked for i in c.chunk_ids}))
    return [_item(c, sets.get(c.draft_set_id), chunks) for c in picked]


def _item(
    c: ReviewCandidate, info: rag_store.DraftSetInfo | None, chunks: dict[int, Any]
) -> ReviewItem:
    chunk = chunks.get(c.chunk_ids[0]) if c.chunk_ids else None
    drafts: dict[str, str] = {}
    chosen = note = None
    if c.kind in ("preference", "adoption") and info is not None:
        drafts = {label: first_lines(d.text) for label, d in sorted(info.drafts.items())}
        by_id = {d.id: label for label, d in info.drafts.items()}
        chosen = by_id.get(c.draft_id) if c.draft_id is not None else None
    if c.kind == "preference" and c.value in ("A", "B"):
        chosen = c.value
    if c.kind == "adoption":
        chosen = chosen or c.rationale.get("label")
        why = [c.rationale.get(k) for k in ("reason", "details")]
        note = " — ".join(str(w) for w in why if w) or None
    if c.kind == "missing_knowledge":
        note = c.rationale.get("url") or c.rationale.get("note")
    return ReviewItem(
        run_id=c.run_id,
        event_id=c.event_id,
        kind=c.kind,
        value=c.value,
        keep=c.keep,
        reason=c.reason,
        agent_id=c.agent_id,
        clicked_at=c.clicked_at,
        query=_short(info.query if info else "", QUERY_CHARS),
        passage=chunk.title if chunk else None,
        excerpt=_short(chunk.text, EXCERPT_CHARS) if chunk else None,
        chosen=chosen,
        drafts=drafts,
        note=_short(str(note), NOTE_CHARS) if note else None,
    )


def first_lines(text: str, limit: int = LINE_CHARS) -> str:
    """A draft's opening, past its greeting, on one line of at most ``limit`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    while len(lines) > 1 and GREETING.match(lines[0]):
        lines.pop(0)
    return _short(" ".join(lines), limit)


def _short(text: str, limit: int) -> str:
    return textwrap.shorten(" ".join(text.split()), limit, placeholder="…") if text else ""


# --- agreement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """The judge against its reviewers over ``n`` reviews: how many agreed, and Cohen's kappa
    (None: n = 0, or every label on both sides the same, where kappa is 0 / 0)."""

    n: int
    agreed: int
    kappa: float | None

    @property
    def share(self) -> float | None:
        return self.agreed / self.n if self.n else None

    def to_json(self) -> dict[str, Any]:
        kappa = None if self.kappa is None else round(self.kappa, 4)
        return {"n": self.n, "agreed": self.agreed, "kappa": kappa}


def agreement(pairs: Sequence[tuple[bool, bool]]) -> Agreement:
    """Kappa over (the judge kept, the reviewer agreed) pairs. The reviewer's label is the
    judge's when they agree, the other one when they do not."""
    n = len(pairs)
    agreed = sum(1 for _, agrees in pairs if agrees)
    judge = [bool(keep) for keep, _ in pairs]
    reviewers = [keep if agrees else not keep for keep, agrees in pairs]
    if len(set(judge) | set(reviewers)) < 2:  # n = 0, or one label throughout: 0 / 0
        return Agreement(n, agreed, None)
    from sklearn.metrics import cohen_kappa_score  # a second's import, only when needed

    kappa = float(cohen_kappa_score(judge, reviewers, labels=[False, True]))
    return Agreement(n, agreed, None if math.isnan(kappa) else kappa)


def agreement_summary(
    conn: psycopg.Connection, since: datetime, until: datetime | None = None
) -> dict[str, Any]:
    """The judge against its reviewers in ``[since, until)`` ('period') and over every review
    before ``until`` ('all_time'), as the digest stores it and
    ``flywheel.digest.report.judge_agreement_line`` reads it."""
    every = store.reviews(conn, until=until)
    period = [r for r in every if r.reviewed_at >= since]
    return {
        "period": agreement([(r.keep, r.agrees) for r in period]).to_json(),
        "all_time": agreement([(r.keep, r.agrees) for r in every]).to_json(),
    }
