"""The flywheel's outcomes in words: a cycle's decisions (the weekly digest's "last retrain",
the CLI, the note admins get after each cycle) and a model change (the digest, App Home)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flywheel.registry import KINDS

TRIGGERS = {"schedule": "The weekly retrain", "app_home": "The retrain", "cli": "The retrain"}


def decision_lines(decisions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per model, promoted or kept, on which metric, and why (the metric before → after)."""
    lines = []
    for kind in KINDS:
        decision = decisions.get(kind)
        if not decision:
            continue
        verdict = "promoted" if decision.get("promoted") else "kept the current model"
        reason = decision.get("reason", "no reason recorded")  # names any metric skipped
        on = f", decided on {decision['metric']}" if decision.get("metric") else ""
        lines.append(f"{kind}: {verdict}{on} ({reason})")
    return lines


def decision_summary(decisions: Mapping[str, Mapping[str, Any]]) -> str:
    """A run's decisions on one line (``aitl flywheel runs``): kept or promoted, on which
    metric."""
    return "; ".join(
        f"{kind}: {'promoted' if d.get('promoted') else 'kept'}{decided_by(d)}"
        for kind, d in decisions.items()
    )


def decided_by(decision: Mapping[str, Any]) -> str:
    """The metric the gate decided on and those it skipped at their ceiling, as in
    `` on ndcg@5 (recall@20 at its ceiling)``; empty for a decision recorded before the gate
    said so, or not by the IR gate (the generator's)."""
    metric, ceiling = decision.get("metric"), decision.get("at_ceiling") or []
    if not metric and not ceiling:
        return ""
    if not metric:
        return f" (every gate metric at its ceiling: {', '.join(ceiling)})"
    if not ceiling:
        return f" on {metric}"
    their = "its" if len(ceiling) == 1 else "their"
    return f" on {metric} ({', '.join(ceiling)} at {their} ceiling)"


def judge_summary(counts: Mapping[str, Any]) -> str:
    """A run's judge in a few words (``aitl flywheel runs``): the share of clicks it dropped,
    the rule that dropped most, and any rule found unusual or skipped."""
    groups = counts.get("judge") or {}
    events = sum(g.get("events", 0) for g in groups.values())
    if not events:
        return ""
    dropped = sum(g.get("filtered", 0) for g in groups.values())
    text = f"{dropped / events:.0%} of {events:,}"
    rules = counts.get("judge_rules") or {}
    totals = {rule: sum(kinds.values()) for rule, kinds in (rules.get("dropped") or {}).items()}
    if totals:
        top = max(totals, key=totals.__getitem__)
        text += f", most by {top}"
    unusual = sorted({u["rule"] for u in rules.get("unusual", [])})
    if unusual:
        skipped = set(rules.get("skipped") or ())
        named = (f"{rule} (skipped)" if rule in skipped else rule for rule in unusual)
        text += f"; unusual: {', '.join(named)}"
    return text


def memory_line(counts: Mapping[str, Any]) -> str:
    """'memory: 120 clicks from 40 tickets; moved 12 of 95 drafts since the last cycle'; empty
    for a run from before the memory."""
    memory = counts.get("memory")
    if not memory:
        return ""
    line = (
        f"memory: {memory['entries']:,} clicks from {memory['tickets']:,} tickets;"
        f" moved {memory['drafts_moved']:,} of {memory['drafts']:,} drafts since the last cycle"
    )
    redundant = redundancy_line(counts)
    return f"{line}; {redundant}" if redundant else line


def redundancy_line(counts: Mapping[str, Any]) -> str:
    """Whether the retrained models made the memory redundant, e.g. 'the retrained models, now
    live, make 41 of the memory's 58 moves alone; the models before them made 12'; empty for a
    run that did not measure it (from before, or with the memory off or empty). No brackets:
    the digest's summary cuts a line at its first."""
    figures = (counts.get("memory") or {}).get("redundant")
    if not figures:
        return ""
    if "error" in figures:
        return (
            "not measured whether the retrained models made the memory redundant:"
            f" {figures['error']}"
        )
    live = figures["live"]
    if not live["of"]:
        return "no move of the memory to compare the models with"
    moves = f"of the memory's {live['of']:,} moves alone"
    candidate = figures.get("candidate")
    if candidate is None:
        return f"nothing retrained; the live models make {live['agree']:,} {moves}"
    made = f"{candidate['agree']:,} {moves}"
    if figures.get("promoted"):
        return (
            f"the retrained models, now live, make {made};"
            f" the models before them made {live['agree']:,}"
        )
    promoted = figures.get("promoted_kinds") or []
    if not promoted:
        return (
            f"the retrained models would make {made}, not promoted;"
            f" the live ones make {live['agree']:,}"
        )
    kept = [kind for kind in candidate.get("kinds", []) if kind not in promoted]
    return (
        f"the retrained models would make {made}; only the {' and '.join(promoted)} promoted,"
        f" the {' and '.join(kept)} kept; the models before the cycle made {live['agree']:,}"
    )


def evidence_line(evidence: Mapping[str, Any]) -> str:
    """'12 (31 marks) → 9 (22 marks)': the held-out tickets the gate decided on, before and
    after judging, and a plain warning when judging left fewer than it needs."""
    if not evidence:
        return "—"
    before = f"{evidence['tickets_before']:,} ({evidence['marks_before']:,} marks)"
    after = f"{evidence['tickets_after']:,} ({evidence['marks_after']:,} marks)"
    text = f"{before} → {after}"
    needed = evidence.get("needed", 0)
    if evidence["tickets_after"] < needed <= evidence["tickets_before"]:
        text += f", fewer than the {needed} the gate needs: the judge left too few"
    return text


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
    warnings: Sequence[str] = (),
) -> str:
    """What admins read when a cycle ends: how it ended, what goes live, for a failure that
    nothing live changed, and any warning (after the outcome, whatever it was)."""
    text = _outcome(run_id, trigger, status, seconds, decisions, error, by)
    return "\n\n".join([text, *warnings])


def _outcome(run_id, trigger, status, seconds, decisions, error, by) -> str:
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
