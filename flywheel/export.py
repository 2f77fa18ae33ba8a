"""``aitl flywheel export``: the judged datasets as JSONL, for teams that train elsewhere.

Files: ``retriever.jsonl`` (anchor, positive, negative: sentence-transformers'
MultipleNegativesRankingLoss columns), ``reranker.jsonl`` (query, passage, label: a
CrossEncoder's), ``generator.jsonl`` (prompt, chosen, rejected: TRL's ORPO/DPO preference
format), ``eval_queries.jsonl`` and ``eval_generator.jsonl`` (the held-out 10%), and
``gaps.jsonl`` (missing knowledge that names no article). Free text was redacted at capture,
and is again on its way out (the datasets redact their texts; the gaps' rationales here).

``reranker_mined.jsonl`` (same columns, label 0) holds the negatives a cycle would mine for the
reranker, here from the live retriever's top ``AITL_RETRIEVE_K``: a reranker trained on the
clicks alone never sees the unlabelled chunks it reorders at serving time (see
``flywheel/mining.py``). A separate file, since they depend on that retriever: a team that
trains its own retriever may mine against it instead. ``AITL_RERANKER_MINED_NEGATIVES=0``
leaves it empty.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aitl.core.db import Database
from aitl.core.pii import redact
from aitl.core.settings import Settings
from flywheel.cycle import default_judge, live_evaluator, mine, prepare
from flywheel.datasets import write_jsonl
from flywheel.examples import RerankExample
from rag import factory


def export_datasets(settings: Settings, db: Database, out: Path) -> dict[str, int]:
    data = prepare(settings, db, default_judge(settings), datetime.now(UTC)).data
    mined = _mined(settings, db, data.reranker)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "retriever.jsonl": (
            {
                "anchor": e.query,
                "positive": e.positive,
                **_negative(e),
                "weight": e.weight,
            }
            for e in data.retriever
        ),
        "reranker.jsonl": (_rerank_row(e) for e in data.reranker),
        "reranker_mined.jsonl": (_rerank_row(e) for e in mined),
        "generator.jsonl": (_pair(p) for p in data.generator),
        "eval_queries.jsonl": (
            {"query_id": q.query_id, "query": q.text, "relevant": sorted(q.relevant)}
            for q in data.eval_queries
        ),
        "eval_generator.jsonl": (_pair(p) for p in data.eval_pairs),
        "gaps.jsonl": (
            {"ticket_ref": g.ticket_ref, "agent": g.agent_id, **_redacted(g.rationale)}
            for g in data.gaps
        ),
    }
    return {name: write_jsonl(out / name, rows) for name, rows in files.items()}


def _mined(settings: Settings, db: Database, examples: list[RerankExample]) -> list[RerankExample]:
    if not examples or settings.reranker_mined_negatives <= 0:
        return []
    live = factory.embedding_versions(settings, db).live_or_bootstrap()
    evaluator, _ = live_evaluator(db, live, [], depth=settings.retrieve_k)
    return mine(settings, evaluator, live[1].path, examples)


def _rerank_row(example: RerankExample) -> dict:
    return {
        "query": example.query,
        "passage": example.passage,
        "label": example.label,
        "weight": example.weight,
    }


def _redacted(rationale: dict) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in rationale.items()}


def _negative(example) -> dict[str, str]:
    return {"negative": example.negatives[0]} if example.negatives else {}


def _pair(pair) -> dict:
    return {
        "system": pair.system,
        "prompt": pair.prompt,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "weight": pair.weight,
    }
