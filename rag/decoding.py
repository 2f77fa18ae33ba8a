"""Decoding aids for a small local LM: a copy bias towards its sources, the reply cut to
whole sentences, and the check that an adapter belongs to the base it is loaded on.

Imported lazily by the local drafter and the trainer: it pulls in transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor

from rag import exceptions
from rag.embedding import fingerprint
from rag.extractive import is_item, sentences

BASE_FILE = "aitl-base.json"  # written beside a trained adapter: which base it was trained on


class CopyBias(LogitsProcessor):
    """Adds ``bias`` to the logit of every token of ``sources`` (and the end of text)."""

    def __init__(self, tokenizer: Any, sources: str, bias: float) -> None:
        ids = set(tokenizer(sources, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        self.ids = torch.tensor(sorted(ids), dtype=torch.long)
        self.bias = bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.ids[self.ids < scores.shape[-1]]] += self.bias
        return scores


_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_END = re.compile(r"[.!?:)\"']$")


def complete_units(text: str, limit: int) -> str:
    """At most ``limit`` sentences or list items of ``text``, each complete and said once.

    A reply cut by the token budget ends mid-sentence, and a small model may loop: the last
    unfinished sentence goes (unless it is all there is), repeats go, headings go, bold marks
    become plain text.
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    kept: list[str] = []
    seen: set[str] = set()
    count = 0
    for number, raw in enumerate(lines):
        last_line = number == len(lines) - 1
        line = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), raw)
        if not line:
            if kept and kept[-1]:
                kept.append("")
            continue
        if line.startswith("#"):
            continue
        units = [line] if is_item(line) else sentences(line)
        out: list[str] = []
        for position, unit in enumerate(units):
            unfinished = last_line and position == len(units) - 1 and not _END.search(unit)
            key = re.sub(r"\W+", " ", unit.lower()).strip()
            if unfinished or not key or key in seen or count >= limit:
                continue
            seen.add(key)
            out.append(unit)
            count += 1
        if out:
            kept.append(" ".join(out))
    reply = "\n".join(kept).strip().replace("\n\n\n", "\n\n")
    if not reply and text.strip():  # one sentence, cut by the budget: better than nothing
        return _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text.strip())
    return reply


def mark_adapter_base(adapter: Path, base: Path) -> None:
    """Record which base an adapter was trained on, by the base's fingerprint."""
    (Path(adapter) / BASE_FILE).write_text(
        json.dumps({"base": Path(base).name, "fingerprint": fingerprint(Path(base))})
    )


def check_adapter_base(adapter: Path, base: Path) -> None:
    """A clear error when ``adapter`` was trained on another base than ``base``."""
    marker = Path(adapter) / BASE_FILE
    if not marker.is_file():
        return  # trained elsewhere: PEFT still refuses one whose shapes do not fit
    try:
        trained_on = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise exceptions.GeneratorMisconfigured(f"{marker} is unreadable: {exc}") from exc
    if trained_on.get("fingerprint") != fingerprint(Path(base)):
        raise exceptions.GeneratorMisconfigured(
            f"adapter {adapter} was trained on the base {trained_on.get('base')!r}, not on "
            f"AITL_HF_MODEL_PATH={base}: load it on the base it was trained on"
        )
