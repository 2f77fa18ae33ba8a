"""``aitl flywheel export``: the judged datasets as JSONL, for teams that train elsewhere.

Files: ``retriever.jsonl`` (anchor, positive, negative: sentence-transformers'
MultipleNegativesRankingLoss columns), ``reranker.jsonl`` (query, passage, label: a
CrossEncoder's), ``generator.jsonl`` (prompt, chosen, rejected: TRL's ORPO/DPO preference
format), ``eval_queries.jsonl`` and ``eval_generator.jsonl`` (the held-out 10%), and
``gaps.jsonl`` (missing knowledge that names no article). Free text was redacted at capture,
and is again on its way out (the datasets redact their texts; the gaps' rationales here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aitl.db import Database
from aitl.pii import redact
from aitl.settings import Settings
from flywheel.cycle import default_judge, prepare
from flywheel.datasets import write_jsonl


def export_datasets(settings: Settings, db: Database, out: Path) -> dict[str, int]:
    data = prepare(settings, db, default_judge(settings), datetime.now(UTC)).data
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
        "reranker.jsonl": (
            {"query": e.query, "passage": e.passage, "label": e.label, "weight": e.weight}
            for e in data.reranker
        ),
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


def _redacted(rationale: dict) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in rationale.items()}


def _negative(example) -> dict[str, str]:
    return {"negative": example.negatives[0]} if example.negatives else {}


def _pair(pair) -> dict:
    return {
        "prompt": pair.prompt,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "weight": pair.weight,
    }
