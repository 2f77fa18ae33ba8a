"""Judged clicks for the tests of the judge's review queue: draft sets with (or without) a
Slack card, an agent's click on each, and a cycle's verdicts on those clicks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import store as bot_store
from flywheel import events, store
from flywheel.feedback import SENT_REPLY, Feedback
from flywheel.judge import RULES, Verdict
from tests.support.drafts import draft_set

GREETING = 'Hi there,\n\nThanks for getting in touch about "Hub offline".\n\n'
TEXTS = (
    GREETING + "Unplug the hub for ten seconds, then plug it back in.\n\nBest,\nSupport",
    GREETING + "Hold the reset button until the light blinks white.\n\nBest,\nSupport",
)


@dataclass(frozen=True)
class Click:
    """An agent's click and the judge's verdict on it (``rule``: the rule that dropped it)."""

    kind: str
    value: str
    keep: bool = True
    rule: str | None = None
    card: bool = True  # a Slack card shows its draft set
    chunk: int | None = None
    label: str | None = None  # the draft an adoption used
    rationale: dict[str, Any] = field(default_factory=dict)
    source: str = "slack"


def judged_clicks(
    db,
    clicks: Sequence[Click],
    *,
    status: str = "succeeded",
    query: str = "My Lumen hub drops off the wifi every night. How do I reset it?",
    clicked_at: datetime | None = None,
    agents: int = 2,
) -> tuple[int, list[int]]:
    """One draft set and one click per ``clicks``, judged by a run ended with ``status``;
    returns the run's id and the events' ids, in order."""
    clicked_at = clicked_at or datetime.now(UTC)
    ids = []
    with db.connection() as conn:
        run_id = store.start_run(conn, "test", clicked_at, {})
        for n, click in enumerate(clicks):
            ref = f"zendesk:{9000 + n}"
            citations = [click.chunk] if click.chunk else []
            set_id, drafts = draft_set(conn, ticket_ref=ref, texts=TEXTS, citations=citations)
            conn.execute("UPDATE rag_draft_sets SET query = %s WHERE id = %s", (query, set_id))
            if click.card:
                bot_store.ensure_card(
                    conn,
                    handoff_key=f"test:{set_id}",
                    kind="ticket",
                    draft_set_id=set_id,
                    ticket_ref=ref,
                    drafts=drafts,
                    header={},
                    channel=None,
                )
            subject = f"chunk:{click.chunk}" if click.kind == "relevance" else ""
            label = click.label or (click.value if click.value in ("A", "B") else None)
            feedback = Feedback(
                kind=click.kind,  # type: ignore[arg-type]
                value=click.value,
                draft_set_id=set_id,
                agent_id=f"UAGENT{n % agents}",
                clicked_at=clicked_at,
                subject=SENT_REPLY if click.source == "zendesk" else subject,
                draft_id=drafts[label] if label else None,
                chunk_ids=(click.chunk,) if click.chunk else (),
                rationale=click.rationale,
                source=click.source,
            )
            event, _ = events.record(
                conn,
                feedback,
                ticket_ref=ref,
                draft_ids=list(drafts.values()),
                shown_at=clicked_at - timedelta(minutes=1),
            )
            ids.append(event.id)
        verdicts = [
            Verdict(
                event_id,
                click.keep,
                "consistent" if click.keep else RULES.get(click.rule or "", "doubted"),
                "rules",
                () if click.keep or click.rule is None else (click.rule,),
            )
            for event_id, click in zip(ids, clicks, strict=True)
        ]
        store.save_verdicts(conn, run_id, verdicts)
        store.finish_run(conn, run_id, status)
    return run_id, ids


def verdicts_of(db, run_id: int, event_ids: Sequence[int]) -> None:
    """Run ``run_id`` judges ``event_ids`` too (kept): a later cycle reading the same clicks."""
    with db.connection() as conn:
        store.save_verdicts(
            conn, run_id, [Verdict(e, True, "consistent", "rules", ()) for e in event_ids]
        )
