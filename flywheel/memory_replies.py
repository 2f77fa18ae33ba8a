"""Replies worth reusing: the reply agents used on a card, kept for a near-identical ticket.

At each memory refresh (``flywheel.memory.MemoryBuilder``), every card whose drafts were used
(an adoption "as is" or "edited" the judge kept) gives one entry: the reply as it went out,
read first from the reply the connector saw sent in Zendesk, else the agent's edited text,
else the draft used as it was (an "edited" answer whose text never came, the modal closed, is
not kept: what went out is unknown). The latest standing adoption on the card names the draft
it started from and so the citations. The entry holds the card's (redacted) query embedding
under the live embedding version, and leaves the memory when a passage its draft cited is
deleted, changed or turned agent-only, or when the adoption is replaced or judged out.

Before it is stored, the reply is made fit for another customer: its own ticket's values (the
requester's name, the assignee's, the ticket's number, title and links, as the connector
knows them: ``Ticket.placeholders``) become the Liquid placeholders that render them, so
drafting fills in the new ticket's; the requester's other names become a placeholder nothing
renders, so the sentence holding one is left out; then it is PII-redacted, and each redacted
item becomes a gap marker the agent must fill before the reply can be posted
(``rag.placeholders.markers``). A ticket whose values cannot be read is not remembered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from aitl.core.db import Database
from aitl.core.pii import redact
from aitl.core.settings import Settings
from flywheel import store
from flywheel.events import StoredFeedback
from flywheel.feedback import SENT_REPLY
from rag import placeholders as p
from rag import store as rag_store
from rag.embedding import Embedder
from rag.memory import REUSED_REPLY, ReusedReply
from rag.store import DraftSetInfo, EmbeddingVersion

# ticket refs → the values that ticket's placeholders rendered to ({} for a ticket with no
# customer, an /aitl ask question); a ref left out could not be read and is not remembered
PlaceholderLookup = Callable[[Sequence[str]], dict[str, dict[str, str]]]
USED = ("as_is", "edited")
# replies read per lookup: the nearest one at or above the floor is offered
NEAREST = 5
# a requester's name other than the first, which no ticket fills: its sentence is left out
OTHER_NAME = "{{ticket.requester.last_name}}"
# what redaction left, as the gap the agent must fill on the new ticket
GAPS = {
    "[EMAIL]": "[‹customer's email address›]",
    "[PHONE]": "[‹customer's phone number›]",
    "[CARD]": "[‹card number›]",
    "[ADDRESS]": "[‹customer's address›]",
}
MIN_TITLE_WORDS = 3
_PLACEHOLDER = re.compile(r"(\{\{.*?\}\})", re.S)
_TICKET_WORDS = r"(?:(?i:ticket|request|case)\s*(?:#|(?i:no\.?|number)\s*)?|#)"


@dataclass(frozen=True)
class ChosenReply:
    """One card's reply as it went out, before it is made fit for another customer."""

    draft_set_id: int
    ticket_ref: str
    events: tuple[int, ...]  # the kept adoptions on the card
    text: str
    origin: str  # 'sent' | 'edited' | 'as_is'
    label: str | None
    citations: tuple[int, ...]
    agents: tuple[str, ...]
    adopted_at: datetime


def used(events: Sequence[StoredFeedback]) -> list[StoredFeedback]:
    """The adoptions that say a draft was used."""
    return [e for e in events if e.kind == "adoption" and e.value in USED]


def chosen_replies(
    adoptions: Sequence[StoredFeedback], sets: Mapping[int, DraftSetInfo]
) -> dict[int, ChosenReply]:
    """Draft set → its reply, from the kept adoptions that used a draft (see the module)."""
    by_set: dict[int, list[StoredFeedback]] = {}
    for e in adoptions:
        by_set.setdefault(e.draft_set_id, []).append(e)
    chosen = {}
    for set_id, own in by_set.items():
        info = sets.get(set_id)
        found = _reply(own, info) if info is not None else None
        if found is None:
            continue
        text, origin, event = found
        label = _label(event, info)
        draft = info.drafts.get(label) if label else None
        chosen[set_id] = ChosenReply(
            draft_set_id=set_id,
            ticket_ref=info.ticket_ref,
            events=tuple(sorted(e.id for e in own)),
            text=text,
            origin=origin,
            label=label,
            citations=tuple(draft.citations) if draft is not None else (),
            agents=tuple(sorted({e.agent_id for e in own})),
            adopted_at=max(e.clicked_at for e in own),
        )
    return chosen


def _reply(
    own: Sequence[StoredFeedback], info: DraftSetInfo
) -> tuple[str, str, StoredFeedback] | None:
    """The text that went out, how it is known, and the adoption it is read from."""
    latest_first = sorted(own, key=lambda e: (e.clicked_at, e.id), reverse=True)
    for e in latest_first:
        sent = e.rationale.get("sent_reply") if e.subject == SENT_REPLY else None
        if sent and sent.strip():
            return sent, "sent", e
    latest = latest_first[0]
    if latest.value == "edited":
        edited = latest.rationale.get("edited_reply")
        return (edited, "edited", latest) if edited and edited.strip() else None
    label = _label(latest, info)
    draft = info.drafts.get(label) if label else None
    return (draft.text, "as_is", latest) if draft is not None and draft.text.strip() else None


def _label(event: StoredFeedback, info: DraftSetInfo) -> str | None:
    """The draft an adoption names: its label, else the draft id it points at."""
    label = event.rationale.get("label")
    if label in info.drafts:
        return label
    return next((d.label for d in info.drafts.values() if d.id == event.draft_id), None)


# --- made fit for another customer ---------------------------------------------------------


def depersonalised(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its own ticket's ``values`` turned back into the placeholders that render
    them (names whole-word and case as written; the ticket's number where it reads as one:
    "#123", "ticket 123"), then PII-redacted, with each redacted item a gap to fill."""
    for pattern, placeholder in _patterns(values):
        text = _outside_placeholders(text, pattern, placeholder)
    text = redact(text)
    for token, gap in GAPS.items():
        text = text.replace(token, gap)
    return text


def _patterns(values: Mapping[str, str]) -> list[tuple[re.Pattern[str], str]]:
    """What to look for and its placeholder, the longest values first (a full name before the
    first name in it). The assignee fills ``current_user`` at draft time: the agent sending."""
    words: dict[str, str] = {}
    for name, placeholder in (
        (p.TICKET_LINK, p.TICKET_LINK),
        (p.RATING_URL, p.RATING_URL),
        (p.TICKET_URL, p.TICKET_URL),
        (p.TICKET_TITLE, p.TICKET_TITLE),
        (p.REQUESTER_NAME, p.REQUESTER_NAME),
        (p.REQUESTER_FIRST_NAME, p.REQUESTER_FIRST_NAME),
        (p.AGENT_NAME, p.AGENT_NAME),
        (p.ASSIGNEE_NAME, p.AGENT_NAME),
        (p.AGENT_FIRST_NAME, p.AGENT_FIRST_NAME),
        (p.ASSIGNEE_FIRST_NAME, p.AGENT_FIRST_NAME),
    ):
        value = " ".join((values.get(name) or "").split())
        if name == p.TICKET_TITLE and len(value.split()) < MIN_TITLE_WORDS:
            continue  # a short title ("lamps") is words any reply may hold
        if len(value) >= 2:
            words.setdefault(value, "{{" + placeholder + "}}")
    for other in (values.get(p.REQUESTER_NAME) or "").split()[1:]:
        if len(other.strip(".,")) >= 2:
            words.setdefault(other.strip(".,"), OTHER_NAME)
    found = [
        (re.compile(rf"(?<!\w){_spaced(value)}(?!\w)"), placeholder)
        for value, placeholder in sorted(words.items(), key=lambda item: -len(item[0]))
    ]
    ticket_id = (values.get(p.TICKET_ID) or "").strip()
    if ticket_id:  # only where it reads as the ticket's number: "#123", "ticket 123"
        number = re.compile(rf"(?<!\w)({_TICKET_WORDS}){re.escape(ticket_id)}(?!\d)")
        found.append((number, "\\1{{" + p.TICKET_ID + "}}"))
    return found


def _spaced(value: str) -> str:
    """``value`` as a pattern that also matches it broken over other whitespace."""
    return r"\s+".join(re.escape(part) for part in value.split())


def _outside_placeholders(text: str, pattern: re.Pattern[str], replacement: str) -> str:
    """``pattern`` replaced in ``text``, never inside a placeholder already put there."""
    parts = _PLACEHOLDER.split(text)
    return "".join(
        part if i % 2 else pattern.sub(lambda m: m.expand(replacement), part)
        for i, part in enumerate(parts)
    )


# --- the refresh's part --------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyRefresh:
    entries: int
    added: int
    removed: int


def refresh(
    conn,
    live: tuple[EmbeddingVersion, Embedder] | None,
    adoptions: Sequence[StoredFeedback],
    sets: Mapping[int, DraftSetInfo],
    *,
    values: PlaceholderLookup | None,
    brands: Callable[[Sequence[str]], dict[str, str]] | None,
) -> ReplyRefresh:
    """Bring ``memory_replies`` up to date in the caller's transaction (under the memory's
    lock): the replies of ``adoptions`` (judged kept, standing in the horizon) whose cited
    passages still stand for customers, under the live version (none without one). Without
    a ``values`` lookup to make them fit for another customer, no new one is added."""
    name = live[0].version if live else None
    wanted = _standing(conn, live, chosen_replies(adoptions, sets))
    held = store.reply_keys(conn)
    stale = [s for s, key in held.items() if s not in wanted or key != (wanted[s].events, name)]
    removed = store.forget_replies(conn, stale) if stale else 0
    new = [r for s, r in wanted.items() if held.get(s) != (r.events, name)]
    added = 0
    if live is not None and new and values is not None:
        entries = _entries(live, new, sets, values, brands)
        store.remember_replies(conn, entries)
        store.index_replies(conn, live[0].version, live[1].dimension)
        added = len(entries)
    kept = len(wanted) - len(new) + added
    return ReplyRefresh(kept, added, removed)


def _standing(conn, live, replies: dict[int, ChosenReply]) -> dict[int, ChosenReply]:
    """The replies each of whose cited passages is embedded under the live version (a deleted
    or changed document's chunks lose their vectors) and public."""
    if live is None or not replies:
        return {}
    cited = sorted({c for r in replies.values() for c in r.citations})
    embedded = rag_store.stored_embeddings(conn, live[0].version, cited).keys()
    refs = rag_store.chunk_refs(conn, sorted(embedded))
    public = {c for c, ref in refs.items() if ref.audience == "public"}
    return {s: r for s, r in replies.items() if set(r.citations) <= public}


def _entries(
    live: tuple[EmbeddingVersion, Embedder],
    new: Sequence[ChosenReply],
    sets: Mapping[int, DraftSetInfo],
    values: PlaceholderLookup,
    brands: Callable[[Sequence[str]], dict[str, str]] | None,
) -> list[store.ReplyEntry]:
    """The new entries of the tickets whose values could be read, each query embedded once."""
    refs = sorted({r.ticket_ref for r in new})
    known = values(refs)
    fit = [r for r in new if r.ticket_ref in known]
    if not fit:
        return []
    version, embedder = live
    vectors = embedder.encode([sets[r.draft_set_id].query for r in fit])
    brand_of = brands(refs) if brands is not None else {}
    return [
        store.ReplyEntry(
            draft_set_id=r.draft_set_id,
            events=r.events,
            ticket_ref=r.ticket_ref,
            text=depersonalised(r.text, known[r.ticket_ref]),
            origin=r.origin,
            label=r.label,
            citations=r.citations,
            agents=r.agents,
            adopted_at=r.adopted_at,
            version=version.version,
            embedding=vector,
            brand=brand_of.get(r.ticket_ref),
        )
        for r, vector in zip(fit, vectors, strict=True)
    ]


# --- the lookup ------------------------------------------------------------------------------


def offered(
    settings: Settings,
    db: Database,
    query_vector: np.ndarray,
    *,
    version: str,
    brand: str | None,
    champion: str,
    other_than: str | None,
) -> ReusedReply | None:
    """The nearest reply at or above ``AITL_MEMORY_REPLY_FLOOR``; none when the reuse is off
    or the online test retired it against ``champion``."""
    if not (settings.memory_enabled and settings.memory_replies_enabled):
        return None
    vector = np.asarray(query_vector, dtype=np.float32)
    with db.connection() as conn:
        if champion and store.duel_decision(conn, champion, REUSED_REPLY) == "retired":
            return None
        hits = store.nearest_replies(
            conn, version, vector, limit=NEAREST, brand=brand, other_than=other_than
        )
    hits = sorted(hits, key=lambda h: (-h.similarity, -h.adopted_at.timestamp()))
    if not hits or hits[0].similarity < settings.memory_reply_floor:
        return None
    hit = hits[0]
    return ReusedReply(
        text=hit.text,
        ticket_ref=hit.ticket_ref,
        similarity=float(hit.similarity),
        entry=hit.id,
        adopted_at=hit.adopted_at,
        agents=tuple(hit.agents),
        citations=tuple(hit.citations),
        origin=hit.origin,
    )
