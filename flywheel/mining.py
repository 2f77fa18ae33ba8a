"""Hard negatives for the reranker, mined from the retriever it will reorder.

Agents only mark what they were shown, so every labelled chunk sits in the old retriever's top
few. At serving time the reranker sees the new retriever's whole top ``retrieve_k``, most of it
never labelled; without examples of such chunks it learns to tell agents' marks apart but not
to push down what the retriever wrongly ranks high. The chunks mined here are the retriever's
best-ranked ones for a training ticket that no agent tied to it: negatives, on the assumption
(which the missing-knowledge button makes fair) that a relevant one would have been marked or
named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from flywheel.examples import RerankExample

Search = Callable[[Sequence[str], int], list[list[tuple[int, float]]]]


def mined_negatives(
    examples: Sequence[RerankExample],
    search: Search,
    texts: Mapping[int, str],
    *,
    per_ticket: int,
    depth: int,
    limit: int | None = None,
) -> list[RerankExample]:
    """Up to ``per_ticket`` label-0 examples per ticket, best-ranked first, from the top
    ``depth`` that ``search`` returns; none of them a chunk the ticket already has a label for.

    At most ``limit`` in all, spread evenly (fewer per ticket when there are many tickets), so
    mining cannot outgrow the per-cycle cap that bounds training time.
    Each carries the ticket's highest weight, so a trusted agent's ticket keeps its pull, and
    no event ids: no click made it.
    """
    tickets: dict[str, list[RerankExample]] = {}
    for example in examples:
        tickets.setdefault(example.query_id, []).append(example)
    if limit is not None and tickets:
        per_ticket = min(per_ticket, max(1, limit // len(tickets)))
    if per_ticket <= 0 or not tickets or limit == 0:
        return []
    queries = [found[0].query for found in tickets.values()]
    ranked = search(queries, depth)
    mined = []
    for (query_id, found), hits in zip(tickets.items(), ranked, strict=True):
        labelled = {e.chunk_id for e in found}
        weight = max(e.weight for e in found)
        fresh = [c for c, _ in hits if c not in labelled and c in texts][:per_ticket]
        mined.extend(
            RerankExample(query_id, found[0].query, chunk_id, texts[chunk_id], 0.0, weight)
            for chunk_id in fresh
        )
    return mined if limit is None else mined[:limit]
