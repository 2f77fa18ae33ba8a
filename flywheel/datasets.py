"""Training and held-out data from judged events, split 90/10 by time as the paper does.

A ticket (all its draft sets) lands on one side of the split only. The held-out tickets become
evaluation queries and preference pairs; missing knowledge that names no article goes to the
gap report, never to training.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from aitl.core.pii import redact
from flywheel.evaluation import EvalQuery
from flywheel.events import StoredFeedback
from flywheel.examples import PreferencePair, RerankExample, RetrievalExample
from flywheel.feedback import SENT_REPLY
from flywheel.judge import JudgeContext
from rag.chunking import embedding_text
from rag.generation import CONCISE, DraftInput, llm_messages
from rag.models import RetrievedChunk, Ticket
from rag.pipeline import quotable
from rag.prompts import PromptLibrary
from rag.store import ChunkRef, DraftSetInfo


@dataclass
class Datasets:
    retriever: list[RetrievalExample] = field(default_factory=list)
    reranker: list[RerankExample] = field(default_factory=list)
    generator: list[PreferencePair] = field(default_factory=list)
    eval_queries: list[EvalQuery] = field(default_factory=list)
    eval_pairs: list[PreferencePair] = field(default_factory=list)
    # held-out tickets as the generator sees them: what its offline win rate is judged on
    eval_requests: list[DraftInput] = field(default_factory=list)
    # held-out tickets with the reply an agent wrote for them (edited or sent): the reference
    # a trained generator's replies are scored against
    eval_references: list[tuple[DraftInput, str]] = field(default_factory=list)
    gaps: list[StoredFeedback] = field(default_factory=list)
    train_tickets: int = 0
    eval_tickets: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "retriever_pairs": len(self.retriever),
            "reranker_examples": len(self.reranker),
            "generator_pairs": len(self.generator),
            "eval_queries": len(self.eval_queries),
            "eval_pairs": len(self.eval_pairs),
            "eval_prompts": len(self.eval_requests),
            "eval_references": len(self.eval_references),
            "gaps": len(self.gaps),
            "train_tickets": self.train_tickets,
            "eval_tickets": self.eval_tickets,
        }

    def capped(self, limit: int) -> tuple[Datasets, dict[str, int]]:
        """At most ``limit`` training examples per model, the newest kept; and what was left.

        The cap bounds a cycle's training time whatever the week's volume. Each model trains
        on from the live champion, so the older examples it drops were mostly learnt already.
        """
        kept = replace(
            self,
            retriever=newest(self.retriever, limit),
            reranker=newest(self.reranker, limit),
            generator=newest(self.generator, limit),
        )
        left = {
            "retriever_pairs": len(self.retriever) - len(kept.retriever),
            "reranker_examples": len(self.reranker) - len(kept.reranker),
            "generator_pairs": len(self.generator) - len(kept.generator),
        }
        return kept, {name: n for name, n in left.items() if n > 0}


Example = TypeVar("Example", RetrievalExample, RerankExample, PreferencePair)


def newest(examples: Sequence[Example], limit: int) -> list[Example]:
    """The ``limit`` examples from the latest clicks (event ids grow with time), in their order."""
    if len(examples) <= limit:
        return list(examples)
    order = sorted(range(len(examples)), key=lambda i: max(examples[i].event_ids, default=0))
    chosen = set(order[-limit:])
    return [e for i, e in enumerate(examples) if i in chosen]


def split_by_time(events: Sequence[StoredFeedback], holdout: float) -> tuple[set[str], set[str]]:
    """Tickets in the order of their first click; the last ``holdout`` share is held out."""
    first: dict[str, tuple] = {}
    for e in events:
        first.setdefault(e.ticket_ref, (e.clicked_at, e.id))
    ordered = sorted(first, key=first.__getitem__)
    held = max(1, round(len(ordered) * holdout)) if len(ordered) > 1 else 0
    cut = len(ordered) - held
    return set(ordered[:cut]), set(ordered[cut:])


def build(
    events: Sequence[StoredFeedback],
    context: JudgeContext,
    weights: dict[str, float],
    prompts: PromptLibrary,
    *,
    holdout: float = 0.1,
) -> Datasets:
    """``events`` are the ones the judge kept."""
    train, held = split_by_time(events, holdout)
    data = Datasets(train_tickets=len(train), eval_tickets=len(held))
    by_set: dict[int, list[StoredFeedback]] = {}
    for e in events:
        by_set.setdefault(e.draft_set_id, []).append(e)
    for set_id, own in by_set.items():
        info = context.sets.get(set_id)
        if info is None:
            continue
        info = private(info)
        data.gaps.extend(e for e in own if e.kind == "missing_knowledge" and not e.chunk_ids)
        if info.ticket_ref in held:
            _held_out(data, info, own, context, prompts)
        else:
            _training(data, info, own, context, weights, prompts)
    return data


def private(info: DraftSetInfo) -> DraftSetInfo:
    """The draft set with personal data redacted before it becomes training data.

    Queries were redacted at capture; drafts were not (an LLM draft may quote the customer).
    Every text is redacted once per cycle, so a rule added later covers old events too.
    """
    drafts = {label: replace(d, text=_redacted(d.text)) for label, d in info.drafts.items()}
    return replace(info, query=_redacted(info.query), drafts=drafts)


@functools.lru_cache(maxsize=8192)
def _redacted(text: str) -> str:
    return redact(text)


def _labels(own: Iterable[StoredFeedback]) -> tuple[dict[int, list], dict[int, list]]:
    """Chunk → events saying relevant (or naming it as missing) / not relevant."""
    positive: dict[int, list] = {}
    negative: dict[int, list] = {}
    for e in own:
        if e.kind == "relevance" and e.chunk_ids:
            target = positive if e.value == "relevant" else negative
            target.setdefault(e.chunk_ids[0], []).append(e)
        elif e.kind == "missing_knowledge" and e.chunk_ids:
            positive.setdefault(e.chunk_ids[0], []).append(e)
    return positive, negative


def _text(chunk: ChunkRef) -> str:
    return embedding_text(chunk.title, chunk.text)


def _weight(found: list[StoredFeedback], weights: dict[str, float]) -> float:
    return max(weights.get(e.agent_id, 1.0) for e in found)


def _training(data, info: DraftSetInfo, own, context, weights, prompts) -> None:
    positive, negative = _labels(own)
    negatives = tuple(_text(context.chunks[c]) for c in negative if c in context.chunks)
    query_id = f"set:{info.id}"
    for chunk_id, found in positive.items():
        chunk = context.chunks.get(chunk_id)
        if chunk is None:
            continue
        data.retriever.append(
            RetrievalExample(
                query_id,
                info.query,
                chunk_id,
                _text(chunk),
                negatives,
                _weight(found, weights),
                tuple(e.id for e in found),
            )
        )
    for labels, value in ((positive, 1.0), (negative, 0.0)):
        for chunk_id, found in labels.items():
            if chunk_id in context.chunks:
                data.reranker.append(
                    RerankExample(
                        query_id,
                        info.query,
                        chunk_id,
                        _text(context.chunks[chunk_id]),
                        value,
                        _weight(found, weights),
                        tuple(e.id for e in found),
                    )
                )
    data.generator.extend(_pairs(info, own, context, prompts, weights))


def held_out_queries(
    events: Sequence[StoredFeedback], context: JudgeContext, held: set[str]
) -> list[EvalQuery]:
    """The queries of the ``held`` tickets from ``events`` as they stand: given the gate's
    held-out tickets and every click, what those tickets held before judging (a cycle reports
    it beside what the gate decided on)."""
    by_set: dict[int, list[StoredFeedback]] = {}
    for e in events:
        if e.ticket_ref in held:
            by_set.setdefault(e.draft_set_id, []).append(e)
    found = (_eval_query(context.sets[s], own) for s, own in by_set.items() if s in context.sets)
    return [query for query in found if query is not None]


def _eval_query(info: DraftSetInfo, own) -> EvalQuery | None:
    positive, _ = _labels(own)
    return EvalQuery(f"set:{info.id}", info.query, frozenset(positive)) if positive else None


def _held_out(data, info: DraftSetInfo, own, context, prompts) -> None:
    query = _eval_query(info, own)
    if query is not None:
        data.eval_queries.append(query)
    data.eval_pairs.extend(_pairs(info, own, context, prompts, {}))
    if info.drafts:
        data.eval_requests.append(draft_input(info, context))
        reference = _reference(own)
        if reference:
            data.eval_references.append((draft_input(info, context), reference))


def _reference(own) -> str | None:
    """The newest reply an agent wrote for the ticket: the one sent in the helpdesk, else an
    edited draft (both PII-redacted)."""
    for e in sorted(own, key=lambda e: (e.subject == SENT_REPLY, e.id), reverse=True):
        text = e.rationale.get("sent_reply") if e.subject == SENT_REPLY else None
        text = text or (e.rationale.get("edited_reply") if e.value == "edited" else None)
        if e.kind == "adoption" and text and text.strip():
            return _redacted(text)
    return None


def _pairs(info, own, context, prompts, weights) -> list[PreferencePair]:
    """Every signal that says one reply beats another: Prefer A/B; a draft used as is over the
    one not used; an edited reply over the draft it started from; the reply actually sent in
    the helpdesk over the draft it was compared with. "Both bad" and "not used" say nothing
    about which is better, so they give no pair."""
    messages = llm_messages(prompts, draft_input(info, context))
    pairs = []
    for e in own:
        found = _preferred(e, info.drafts)
        if found is None:
            continue
        chosen, rejected = found
        if chosen.strip() != rejected.strip():
            pairs.append(
                PreferencePair(
                    messages["user"],
                    chosen,
                    rejected,
                    weights.get(e.agent_id, 1.0),
                    (e.id,),
                    system=messages["system"],
                )
            )
    return pairs


def _preferred(e, drafts: dict) -> tuple[str, str] | None:
    """(chosen, rejected) texts one event stands for, if it stands for any."""
    both = {"A", "B"} <= set(drafts)
    label = e.rationale.get("label") or ""
    other = drafts.get("B" if label == "A" else "A") if label in ("A", "B") else None
    if e.kind == "preference" and e.value in ("A", "B") and both:
        return drafts[e.value].text, drafts["B" if e.value == "A" else "A"].text
    if e.kind != "adoption" or label not in drafts:
        return None
    if e.subject == SENT_REPLY and e.value in ("edited", "not_used"):
        return _redacted(e.rationale.get("sent_reply") or ""), drafts[label].text
    if e.value == "as_is" and other is not None:  # clicked, or read from the reply sent
        return drafts[label].text, other.text
    if e.value == "edited" and e.rationale.get("edited_reply"):
        return _redacted(e.rationale["edited_reply"]), drafts[label].text
    return None


def draft_input(info: DraftSetInfo, context: JudgeContext) -> DraftInput:
    """The ticket with the context the generator retrieved for it, as the generator reads it:
    public passages only (``rag.pipeline.quotable``), so training sees what serving gave."""
    passages = quotable(
        tuple(
            RetrievedChunk(
                c.chunk_id,
                c.document_id,
                c.title,
                c.text,
                c.url,
                "",
                c.external_id,
                0.0,
                audience=c.audience,
            )
            for c in (context.chunks.get(cid) for cid in info.context)
            if c is not None
        )
    )
    return DraftInput(Ticket(subject="", body=info.query), passages, CONCISE)


def write_jsonl(path, rows: Iterable[dict]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
