"""The flywheel's outcomes in words: a cycle's decisions (the weekly digest's "last retrain",
the CLI, the note admins get after each cycle) and a model change (the digest, App Home)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flywheel.registry import KINDS

TRIGGERS = {"schedule": "The weekly retrain", "app_home": "The retrain", "cli": "The retrain"}


def decision_lines(decisions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per model, promoted or kept, and why (the metric before → after)."""
    lines = []
    for kind in KINDS:
        decision = decisions.get(kind)
        if not decision:
            continue
        verdict = "promoted" if decision.get("promoted") else "kept the current model"
        lines.append(f"{kind}: {verdict} ({decision.get('reason', 'no reason recorded')})")
    return lines


def first_line(error: str, limit: int = 300) -> str:
    """What went wrong, for a direct message rather than a log: a database error's text goes
    on with the statement it failed in."""
    return next(iter(error.strip().splitlines()), "")[:limit]


def cycle_note(
    *,
    run_id: int | None,
    trigger: str,
    status: str,
    seconds: float | None = None,
    decisions: Mapping[str, Mapping[str, Any]] | None = None,
    error: str | None = None,
    by: str | None = None,
) -> str:
    """What admins read when a cycle ends: how it ended, what goes live, and for a failure
    that nothing live changed."""
    if error:
        error = first_line(error)
    what = TRIGGERS.get(trigger, "The retrain")
    if run_id is not None:
        what += f" (run {run_id})"
    if by:
        what += f", asked by <@{by}>,"
    took = f" in {seconds / 60:.0f} min" if seconds and seconds >= 90 else ""
    if status == "succeeded":
        lines = decision_lines(decisions or {})
        promoted = sum(1 for d in (decisions or {}).values() if d.get("promoted"))
        head = f"{what} finished{took}: " + (
            f"{promoted} model{'s' if promoted != 1 else ''} promoted, serving the next drafts."
            if promoted
            else "the current models stay live."
        )
        return "\n".join([head, *(f"• {line}" for line in lines)])
    if status == "not_enough_data":
        return f"{what} trained nothing: {error}. The current models stay live."
    if status == "skipped":
        return f"{what} did not start: {error}. The current models stay live."
    return f"{what} failed{took}: {error}. Nothing live changed; `aitl flywheel runs` has the run."
