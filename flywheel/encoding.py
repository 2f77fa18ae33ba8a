"""What a cycle's encoders did: the backend each model ran on and how fast it encoded.

Issue 33's goal is that the evaluation and a blue/green re-embed take proportionally less time
on a faster inference backend (``AITL_ENCODER_BACKEND``). The run record says so, per run
(``counts["encoders"]``), in texts per second, so that runs can be compared, and
``aitl flywheel runs`` shows it in a line an admin reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

# what a step encodes, as a line names it
NOUNS = {"chunks": "chunks", "queries": "queries", "tickets": "tickets", "pairs": "pairs"}


@dataclass
class Encoded:
    """Texts one model encoded (or pairs it scored) for one purpose, and the seconds it took."""

    step: str  # evaluation, mining, memory
    model: str  # the model's folder
    what: str  # chunks, queries, tickets (searched for mining) or pairs (scored)
    backend: str
    texts: int = 0
    seconds: float = 0.0


class EncodingLog:
    """Accumulates ``Encoded`` figures; ``under(step)`` shares them with another step's name
    (the memory check uses an evaluator of its own)."""

    def __init__(self, step: str = "evaluation", entries: dict | None = None) -> None:
        self.step = step
        self.entries: dict[tuple[str, str, str, str], Encoded] = (
            entries if entries is not None else {}
        )

    def under(self, step: str) -> EncodingLog:
        return EncodingLog(step, self.entries)

    @contextmanager
    def timing(
        self, model: str, what: str, backend: str, texts: int, *, step: str | None = None
    ) -> Iterator[None]:
        started = time.perf_counter()
        yield
        step = step or self.step
        key = (step, model, what, backend)
        entry = self.entries.setdefault(key, Encoded(step, model, what, backend))
        entry.texts += texts
        entry.seconds += time.perf_counter() - started

    def as_records(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The figures for the run record, each model named by ``labels`` (folder → name)."""
        return [
            {
                **asdict(e),
                "model": labels.get(e.model, e.model),
                "seconds": round(e.seconds, 2),
                "per_s": round(e.texts / e.seconds, 1) if e.seconds > 0 else None,
            }
            for e in self.entries.values()
        ]


def encoders_line(counts: Mapping[str, Any]) -> str:
    """One line from a run's ``counts["encoders"]``, e.g. "encoders (auto): evaluation
    encoded 10,882 chunks in 41 s on openvino (265/s)"; empty for runs without it."""
    figures = counts.get("encoders") or {}
    parts = []
    # one part per step, verb (a cross-encoder scores pairs, an embedder encodes texts) and
    # backend: a model that fell back to torch shows apart, at its own speed
    steps: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for item in figures.get("work", []):
        verb = "scored" if item["what"] == "pairs" else "encoded"
        entry = steps.setdefault((item["step"], verb, item["backend"]), {})
        texts, seconds = entry.get(item["what"], [0, 0.0])
        entry[item["what"]] = [texts + item["texts"], seconds + item["seconds"]]
    for (step, verb, backend), done in steps.items():
        texts = sum(t for t, _ in done.values())
        seconds = sum(s for _, s in done.values())
        order = sorted(done, key=lambda w: list(NOUNS).index(w) if w in NOUNS else len(NOUNS))
        what = " and ".join(f"{int(done[w][0]):,} {NOUNS.get(w, w)}" for w in order)
        rate = _rate(texts, seconds)
        parts.append(f"{step} {verb} {what} in {_seconds(seconds)} on {backend}{rate}")
    reembed = figures.get("reembed")
    if reembed:
        reused = reembed.get("from_evaluation", 0)
        parts.append(
            f"the new index took {_seconds(reembed['seconds'])} for {reembed['vectors']:,} vectors"
            f" ({reused:,} from the evaluation) on {'/'.join(reembed.get('backends') or ['?'])}"
        )
    if not parts:
        return ""
    return f"encoders ({figures.get('setting', '?')}): " + "; ".join(parts)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:,.0f} s"


def _rate(texts: float, seconds: float) -> str:
    return f" ({texts / seconds:,.0f}/s)" if seconds > 0 and texts else ""
