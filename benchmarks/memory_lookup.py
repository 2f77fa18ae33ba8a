"""The feedback memory's lookup cost per ticket at 100,000 remembered clicks (issue 32's goal:
p95 ≤ 20 ms on this machine).

On the embedded PostgreSQL: the sample knowledge base is ingested (its live version and real
chunk ids), then ``--entries`` clicks are remembered on ``--entries / 5`` draft sets, by 40
agents, over the last 60 days. Each draft set's vector is a sample ticket's MiniLM embedding
plus a little noise (so tickets cluster as real ones do); the entries are written as a refresh
writes them and indexed with the version's HNSW index. Then ``--lookups`` new tickets (other
forms of the sample tickets) are looked up through ``FlywheelMemory.votes``, as the pipeline
calls it (the query already encoded), with and without a brand, and the p50/p95 printed.
Usage: ``.venv/bin/python benchmarks/memory_lookup.py [--entries 100000] [--lookups 500]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from aitl.core.bootstrap import open_database
from aitl.core.settings import PROJECT_ROOT, Settings
from flywheel import store
from flywheel.memory import FlywheelMemory
from rag import factory
from tests.support.flywheel import sample_tickets

AGENTS = 40
PER_SET = 5  # clicks remembered per draft set
KINDS = ("relevant", "relevant", "not_relevant", "missing")


def fill(db, version: str, vectors: np.ndarray, chunk_ids: list[int], entries: int, rng) -> None:
    """``entries`` clicks on ``entries / PER_SET`` draft sets, written as a refresh writes them."""
    sets = max(1, entries // PER_SET)
    now = datetime.now(UTC)
    with db.connection() as conn:
        first = conn.execute(
            "INSERT INTO rag_draft_sets (ticket_ref, query, retrieved, context, timings_ms)"
            " SELECT 'bench:' || g, 'query', '[]', '{}', '{}' FROM generate_series(1, %s) g"
            " RETURNING id",
            (sets,),
        ).fetchall()
        set_ids = [r[0] for r in first]
        events = conn.execute(
            "INSERT INTO feedback_events (idempotency_key, kind, value, ticket_ref, draft_set_id,"
            " draft_ids, chunk_ids, subject, agent_id, shown_at, clicked_at)"
            " SELECT 'bench:' || s.id || ':' || n, 'relevance', 'relevant', 'bench:' || s.id,"
            " s.id, '{}', ARRAY[0::bigint], 'chunk:' || n, 'U' || n, now(), now()"
            " FROM rag_draft_sets s CROSS JOIN generate_series(1, %s) n"
            " WHERE s.id = ANY(%s) RETURNING id, draft_set_id",
            (PER_SET, set_ids),
        ).fetchall()
        base = rng.integers(0, len(vectors), size=len(set_ids))
        noise = rng.normal(0, 0.03, size=(len(set_ids), vectors.shape[1])).astype(np.float32)
        set_vectors = vectors[base] + noise
        set_vectors /= np.linalg.norm(set_vectors, axis=1, keepdims=True)
        where = {set_id: i for i, set_id in enumerate(set_ids)}
        rows = [
            store.MemoryEntry(
                event_id=event_id,
                kind=KINDS[int(rng.integers(len(KINDS)))],
                chunk_id=chunk_ids[int(rng.integers(len(chunk_ids)))],
                agent_id=f"U{int(rng.integers(AGENTS))}",
                draft_set_id=set_id,
                ticket_ref=f"bench:{set_id}",
                clicked_at=now - timedelta(days=float(rng.uniform(0, 60))),
                version=version,
                embedding=set_vectors[where[set_id]],
                brand=str(int(rng.integers(3))),
            )
            for event_id, set_id in events
        ]
        store.remember(conn, rows)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def bench(args: argparse.Namespace) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="aitl-memory-bench-"))
    rng = np.random.default_rng(args.seed)
    try:
        settings = Settings(_env_file=None, data_dir=data_dir)
        db = open_database(settings)
        try:
            factory.ingestor(settings, db).ingest_path(
                PROJECT_ROOT / "samples" / "kb",
                source="samples",
                max_bytes=settings.max_document_bytes,
            )
            version, embedder = factory.embedding_versions(settings, db).live()
            tickets = sample_tickets(variants=3)
            stored = [t.query_text() for ref, t, _ in tickets if ref.endswith(":0")]
            asked = [t.query_text() for ref, t, _ in tickets if not ref.endswith(":0")]
            with db.connection() as conn:
                chunk_ids = [r[0] for r in conn.execute("SELECT id FROM kb_chunks")]
            started = time.monotonic()
            fill(db, version.version, embedder.encode(stored), chunk_ids, args.entries, rng)
            filled = time.monotonic() - started
            started = time.monotonic()
            with db.connection() as conn:
                store.index_memory(conn, version.version, embedder.dimension)
                conn.execute("ANALYZE feedback_memory")
            indexed = time.monotonic() - started
            queries = embedder.encode([asked[i % len(asked)] for i in range(args.lookups)])
            memory = FlywheelMemory(settings, db)
            runs = {}
            for label, brand in (("any brand", None), ("one brand", "1")):
                times, found = [], []
                memory.votes(queries[0], version=version.version, brand=brand)  # warm
                for query in queries:
                    mark = time.perf_counter()
                    votes = memory.votes(query, version=version.version, brand=brand)
                    times.append((time.perf_counter() - mark) * 1000)
                    found.append(len(votes))
                runs[label] = {
                    "p50_ms": percentile(times, 50),
                    "p95_ms": percentile(times, 95),
                    "max_ms": round(max(times), 2),
                    "votes_per_ticket": round(float(np.mean(found)), 2),
                }
            with db.connection() as conn:
                entries = store.memory_size(conn).entries
                plan = plan_of(conn, version.version, queries[0])
        finally:
            db.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "entries": entries,
        "lookups": args.lookups,
        "k_tickets": settings.memory_k,
        "floor": settings.memory_floor,
        "fill_s": round(filled, 1),
        "index_s": round(indexed, 1),
        "hnsw_used": "feedback_memory_hnsw" in plan,
        "runs": runs,
        "cpus": os.cpu_count(),
    }


def plan_of(conn, version: str, query: np.ndarray) -> str:
    """The lookup's plan, to show the version's HNSW index serves it."""
    dim = len(query)
    rows = conn.execute(
        f"EXPLAIN SELECT id FROM feedback_memory WHERE version = %s"
        f" ORDER BY ((embedding::vector({dim})) <=> %s::vector({dim})) LIMIT 80",
        (version, query),
    ).fetchall()
    return "\n".join(r[0] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    figures = bench(parser.parse_args())
    print(json.dumps(figures, indent=2))
    p95 = max(run["p95_ms"] for run in figures["runs"].values())
    print(f"p95 lookup at {figures['entries']:,} entries: {p95} ms (goal ≤ 20 ms)")


if __name__ == "__main__":
    main()
