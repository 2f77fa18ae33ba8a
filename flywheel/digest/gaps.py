"""The knowledge-gap report of the weekly digest: what agents said was missing, grouped.

Missing-knowledge answers (an article that was not retrieved, a URL, a free-text note) and
"both bad" preferences of a window are embedded with the live embedding model and grouped with
sentence-transformers' community detection; the groups are ranked by how many tickets they
touched, so a manager sees first the article whose absence costs the most. Each group carries
example tickets, the links agents pointed to, a suggested title and the HTML body of a Help
Center draft.

Notes and ticket texts were redacted when they were captured, and are again here.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg

from aitl.core.pii import redact
from flywheel import store
from flywheel.events import StoredFeedback
from rag import store as rag_store

Encode = Callable[[list[str]], np.ndarray]

EXAMPLES = 3
EXAMPLE_CHARS = 200
TITLE_CHARS = 80
UNTITLED = "Untitled knowledge gap"
TITLE_WORDS = 8  # a title longer than this reads like a sentence: fall back to fewer keywords
# every later click counts: an answer changed after the window closed no longer stands
FOREVER = datetime.max.replace(tzinfo=UTC)
WORD = re.compile(r"[A-Za-z][A-Za-z'’]*[A-Za-z]")  # "reset-password" is two words
PLACEHOLDER = re.compile(r"\[[A-Z]+\]")  # what aitl.pii.redact leaves: [EMAIL], [PHONE], [CARD]
# English function words, and the words agents use to say something is missing
STOP_TEXT = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can cannot could did do does doing done down during each
    even ever every few for from further get gets getting got had has have having he her here
    hers him his how however i if in into is it its itself just let like made make many may me
    might more most much must my no nor not now of off on once one only or other our ours out
    over own per please same she should since so some still such than that the their theirs
    them then there these they this those though through to too under until up upon us very
    was we were what when where whether which while who whom why will with within without
    would yet you your yours yourself
    hi hello hey thanks thank regards dear ok okay yes really tried trying try already again
    article articles kb doc docs documentation page link missing need needs needed want wants
    wanted customer customers client user users agent agents ticket tickets asked asking asks
    ask help know say says said tell told explain explains explaining info information
"""
STOP_WORDS = frozenset(STOP_TEXT.split())
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class GapItem:
    """One standing gap signal: a missing-knowledge answer or a "both bad" preference."""

    ticket_ref: str
    draft_set_id: int
    ticket: str  # the ticket text as retrieval saw it (rag_draft_sets.query)
    kind: str  # 'note' | 'url' | 'article' | 'both_bad'
    text: str  # what is clustered: the agent's note, else the ticket text
    url: str | None  # a URL the agent gave, or the pointed article's document URL
    article: str | None  # title of the KB document an 'article' pick pointed to
    event_id: int
    note: str | None = None  # the agent's free text, whatever else the answer named
    article_url: str | None = None  # the pointed article's own URL, even when a URL was given


@dataclass(frozen=True)
class GapCluster:
    """Gap signals about one missing topic, most central first."""

    key: str  # a short hash of the sorted event ids: stable for the same events
    title: str
    tickets: int  # distinct ticket_refs
    items: tuple[GapItem, ...]
    examples: tuple[str, ...]  # ticket texts, most central first, cut to EXAMPLE_CHARS
    articles: tuple[tuple[str, str | None], ...]  # (title or URL, url), most frequent first

    def notes(self) -> tuple[str, ...]:
        """The agents' notes, most central first, each once."""
        return tuple(dict.fromkeys(i.note for i in self.items if i.note))

    def article_body(self) -> str:
        """HTML for a Help Center draft: what to write about, for the writer to replace."""
        parts = [
            f"<p>Agents flagged this knowledge gap on {self.tickets} "
            f"ticket{'s' if self.tickets != 1 else ''}.</p>",
            _section("What customers asked", [html.escape(e) for e in self.examples]),
            _section("Agents' notes", [html.escape(n) for n in self.notes()]),
            _section("Links agents pointed to", [_link(*pointed) for pointed in self.articles]),
        ]
        return "\n".join(p for p in parts if p)


def gap_items(conn: psycopg.Connection, start: datetime, end: datetime) -> list[GapItem]:
    """Standing gap signals clicked in [start, end) (timezone-aware), oldest event first.

    An answer a later click superseded does not count, even when that click came after
    ``end``: the report shows what agents think now.
    """
    events = [e for e in store.standing_events(conn, FOREVER, clicked=(start, end)) if _is_gap(e)]
    if not events:
        return []
    sets = rag_store.draft_set_infos(conn, sorted({e.draft_set_id for e in events}))
    chunks = rag_store.chunk_refs(conn, sorted({e.chunk_ids[0] for e in events if _names_chunk(e)}))
    items = [_item(e, sets[e.draft_set_id].query, chunks) for e in events]
    return sorted(items, key=lambda i: i.event_id)


def cluster_gaps(
    items: Sequence[GapItem],
    encode: Encode,
    *,
    threshold: float = 0.6,
    max_clusters: int = 10,
) -> list[GapCluster]:
    """Group items whose texts have at least ``threshold`` cosine similarity to a centre.

    Ranked by tickets, then items, then the oldest event; singletons are clusters too. The
    input order does not matter: items are sorted by event id before anything else.
    """
    ordered = sorted({i.event_id: i for i in items}.values(), key=lambda i: i.event_id)
    if not ordered:
        return []
    # imported here like everywhere else: the web process need not load torch to render a digest
    from sentence_transformers import util

    vectors = _normalised(np.asarray(encode([i.text for i in ordered]), dtype=np.float32))
    communities = util.community_detection(vectors, threshold=threshold, min_community_size=1)
    clusters = [_cluster([ordered[m] for m in group], vectors[group]) for group in communities]
    clusters.sort(key=lambda c: (-c.tickets, -len(c.items), min(i.event_id for i in c.items)))
    return clusters[:max_clusters]


def suggested_title(texts: Sequence[str]) -> str:
    """A short title: the tightest phrase of the texts that holds the most frequent keywords.

    ``texts`` come most central first. Keywords rank by how many texts use them, then how
    often, then length (longer words say more), then alphabetically, so the result is stable.
    """
    texts = [t for t in texts if t.strip()]
    keywords = _keywords(texts)
    for n in range(min(3, len(keywords)), 1, -1):
        # the tightest phrase of any text; of equally tight ones, the most central
        found = [p for p in (_phrase(text, keywords[:n]) for text in texts) if p]
        if found:
            return _tidy(min(found, key=lambda p: len(WORD.findall(p))))
    if len(keywords) == 1:
        return _tidy(_phrase(texts[0], keywords) or texts[0])
    # no short phrase holds two keywords (often a long ticket text): list the keywords
    return _tidy(", ".join(_surface(texts, keywords[:3]))) if keywords else UNTITLED


def gap_report(
    conn: psycopg.Connection, encode: Encode, start: datetime, end: datetime, **kwargs
) -> list[GapCluster]:
    """The window's gap signals, clustered and ranked; ``kwargs`` go to ``cluster_gaps``."""
    return cluster_gaps(gap_items(conn, start, end), encode, **kwargs)


# --- items -------------------------------------------------------------------------------


def _is_gap(e: StoredFeedback) -> bool:
    return e.kind == "missing_knowledge" or (e.kind == "preference" and e.value == "both_bad")


def _names_chunk(e: StoredFeedback) -> bool:
    return e.kind == "missing_knowledge" and bool(e.chunk_ids)


def _item(e: StoredFeedback, ticket: str, chunks: dict[int, rag_store.ChunkRef]) -> GapItem:
    chunk = chunks.get(e.chunk_ids[0]) if _names_chunk(e) else None
    note = _given(e.rationale.get("note")) if e.kind == "missing_knowledge" else None
    given = _given(e.rationale.get("url")) if e.kind == "missing_knowledge" else None
    # redacted at capture; again here, as the gap report leaves for digests and Help Center
    note, ticket = (redact(note) if note else None), redact(ticket)
    return GapItem(
        ticket_ref=e.ticket_ref,
        draft_set_id=e.draft_set_id,
        ticket=ticket,
        kind="both_bad" if e.kind == "preference" else e.value,
        text=note or ticket,
        url=given or (chunk.url if chunk else None),
        article=chunk.title if chunk else None,
        event_id=e.id,
        note=note,
        article_url=chunk.url if chunk else None,
    )


def _given(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


# --- clusters ----------------------------------------------------------------------------


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Unit rows, so dot products are cosines whatever the encoder returned."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _cluster(members: list[GapItem], vectors: np.ndarray) -> GapCluster:
    centre = _normalised(vectors.mean(axis=0, keepdims=True))[0]
    closeness = vectors @ centre
    order = sorted(
        range(len(members)), key=lambda k: (-round(float(closeness[k]), 6), members[k].event_id)
    )
    items = tuple(members[k] for k in order)
    ids = ",".join(str(i) for i in sorted(i.event_id for i in items))
    return GapCluster(
        key=hashlib.sha256(ids.encode()).hexdigest()[:12],
        title=suggested_title([i.text for i in items]),
        tickets=len({i.ticket_ref for i in items}),
        items=items,
        examples=_examples(items),
        articles=_articles(items),
    )


def _examples(items: Sequence[GapItem]) -> tuple[str, ...]:
    """One ticket text per ticket, the most central first."""
    seen: dict[str, str] = {}
    for item in items:
        if item.ticket_ref not in seen and item.ticket.strip():
            seen[item.ticket_ref] = _cut(item.ticket, EXAMPLE_CHARS)
    return tuple(dict.fromkeys(seen.values()))[:EXAMPLES]


def _articles(items: Sequence[GapItem]) -> tuple[tuple[str, str | None], ...]:
    """Articles and links agents pointed to, one entry per URL (or title), most frequent first."""
    counts: Counter[str] = Counter()
    labels: dict[str, tuple[str, str | None]] = {}
    for item in items:
        pointed = []
        if item.article:
            pointed.append((item.article, item.article_url))
        if item.url and item.url != item.article_url:
            pointed.append((item.url, item.url))
        for label, url in pointed:
            same = url or label
            counts[same] += 1
            # a KB title says more than a bare URL for the same page
            if same not in labels or labels[same][0] == url:
                labels[same] = (label, url)
    ranked = sorted(counts, key=lambda same: (-counts[same], labels[same][0].lower(), same))
    return tuple(labels[same] for same in ranked)


def _section(heading: str, entries: Sequence[str]) -> str:
    """An HTML heading and list of already escaped entries; nothing when there are none."""
    if not entries:
        return ""
    rows = "".join(f"<li>{entry}</li>" for entry in entries)
    return f"<h2>{html.escape(heading)}</h2>\n<ul>{rows}</ul>"


def _link(label: str, url: str | None) -> str:
    """A link only for web addresses: a stored ``javascript:`` URL stays inert text."""
    if url and re.match(r"https?://", url, re.IGNORECASE):
        return f'<a href="{html.escape(url)}">{html.escape(label)}</a>'
    return html.escape(label)


# --- titles ------------------------------------------------------------------------------


def _stem(word: str) -> str:
    """Crude English stemming, enough for 'refunds'/'refunded' to count as 'refund'."""
    word = word.lower().replace("’", "'").removesuffix("'s")
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> list[tuple[re.Match[str], str]]:
    """Words that carry meaning, each with its stem; placeholders and stop words left out."""
    found = []
    for match in WORD.finditer(_blank_placeholders(text)):
        word = match.group(0).lower().replace("’", "'").removesuffix("'s")
        # contractions ("haven't") are function words too
        if len(word) > 2 and word not in STOP_WORDS and "'" not in word:
            found.append((match, _stem(word)))
    return found


def _blank_placeholders(text: str) -> str:
    """Placeholders become spaces of the same length, so match positions fit the text."""
    return PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), text)


def _keywords(texts: Sequence[str]) -> list[str]:
    uses: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for text in texts:
        stems = [stem for _, stem in _content_words(text)]
        uses.update(set(stems))
        total.update(stems)
    return sorted(uses, key=lambda s: (-uses[s], -total[s], -len(s), s))


def _surface(texts: Sequence[str], stems: Sequence[str]) -> list[str]:
    """Each stem as first written in the most central text that uses it."""
    written: dict[str, str] = {}
    for text in texts:
        for match, stem in _content_words(text):
            written.setdefault(stem, match.group(0).lower())
    return [written[stem] for stem in stems]


def _phrase(text: str, keywords: Sequence[str]) -> str | None:
    """The shortest run of one line or sentence of ``text`` (at most TITLE_WORDS words) holding
    every keyword: a ticket's subject and body, or two sentences, do not make one title."""
    found = [p for p in (_phrase_in(part, keywords) for part in SENTENCE.split(text)) if p]
    return min(found, key=lambda p: len(WORD.findall(p))) if found else None


def _phrase_in(text: str, keywords: Sequence[str]) -> str | None:
    words = list(WORD.finditer(_blank_placeholders(text)))
    stems = [_stem(w.group(0)) for w in words]
    wanted = set(keywords)
    best: tuple[int, int] | None = None
    for first in range(len(words)):
        if stems[first] not in wanted:
            continue
        for last in range(first, min(first + TITLE_WORDS, len(words))):
            if wanted <= set(stems[first : last + 1]):
                if best is None or last - first < best[1] - best[0]:
                    best = (first, last)
                break
    if best is None:
        return None
    return text[words[best[0]].start() : words[best[1]].end()]


def _tidy(text: str) -> str:
    text = " ".join(PLACEHOLDER.sub(" ", text).split()).strip(" .,;:!?-")
    text = _cut(text, TITLE_CHARS)
    return text[:1].upper() + text[1:]


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    head = head.rsplit(" ", 1)[0] if " " in head else head
    return head.rstrip(" .,;:") + "…"
