"""The flywheel's SQL: feedback events (append-only) and what is read back from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from flywheel.digest.report import change_words
from flywheel.feedback import AgentStats, Dismissal, Feedback, StoredFeedback

COLUMNS = (
    "id, kind, value, ticket_ref, draft_set_id, draft_ids, draft_id, chunk_ids, subject,"
    " agent_id, rationale, shown_at, clicked_at, supersedes, idempotency_key"
)


def record(
    conn: psycopg.Connection,
    feedback: Feedback,
    *,
    ticket_ref: str,
    draft_ids: Sequence[int],
    shown_at: datetime,
) -> tuple[StoredFeedback, bool]:
    """Store a click once; returns the event and whether this call created it.

    Repeating the slot's current answer stores nothing. Two copies of the same click racing
    each other compute the same key, and the unique key lets only one in. Different answers
    racing each other (an agent changing their mind twice in a second) queue on the slot's
    lock, held to the end of the caller's transaction, so each supersedes the one before
    and the slot keeps one chain.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (slot_key(feedback),))
    current = latest_in_slot(conn, feedback)
    if current is not None and feedback.same_answer(current):
        return current, False
    if current is not None:
        earlier = same_click(conn, feedback)
        if earlier is not None:  # a late copy (a retry) of a click the slot has moved past
            return earlier, False
    key = feedback.idempotency_key(current.id if current else None)
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    row = cur.execute(
        f"""
        INSERT INTO feedback_events (idempotency_key, kind, value, ticket_ref, draft_set_id,
            draft_ids, draft_id, chunk_ids, subject, agent_id, rationale, shown_at, clicked_at,
            supersedes, source, source_ref)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING {COLUMNS}
        """,
        (
            key,
            feedback.kind,
            feedback.value,
            ticket_ref,
            feedback.draft_set_id,
            list(draft_ids),
            feedback.draft_id,
            list(feedback.chunk_ids),
            feedback.subject,
            feedback.agent_id,
            Jsonb(feedback.rationale),
            shown_at,
            feedback.clicked_at,
            current.id if current else None,
            feedback.source,
            Jsonb(feedback.source_ref),
        ),
    ).fetchone()
    if row is not None:
        return row, True
    existing = cur.execute(
        f"SELECT {COLUMNS} FROM feedback_events WHERE idempotency_key = %s", (key,)
    ).fetchone()
    assert existing is not None  # the conflicting row is committed: we saw the conflict
    return existing, False


def record_dismissal(conn: psycopg.Connection, dismissal: Dismissal) -> bool:
    """Store a closed modal once (Slack retries view_closed); False when it was already. The
    caller checks that the draft set is one of its cards."""
    d = dismissal
    row = conn.execute(
        "INSERT INTO feedback_dismissals (draft_set_id, agent_id, modal, view_id, closed_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (view_id) DO NOTHING RETURNING id",
        (d.draft_set_id, d.agent_id, d.modal, d.view_id, d.closed_at),
    ).fetchone()
    return row is not None


def slot_key(feedback: Feedback) -> str:
    """One agent's answer to one question on one card: the unit a new click supersedes."""
    f = feedback
    return f"feedback:{f.draft_set_id}:{f.kind}:{f.subject}:{f.agent_id}"


def latest_in_slot(conn: psycopg.Connection, feedback: Feedback) -> StoredFeedback | None:
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM feedback_events
        WHERE draft_set_id = %s AND kind = %s AND subject = %s AND agent_id = %s
        ORDER BY id DESC LIMIT 1
        """,
        (feedback.draft_set_id, feedback.kind, feedback.subject, feedback.agent_id),
    ).fetchone()


def same_click(conn: psycopg.Connection, feedback: Feedback) -> StoredFeedback | None:
    """The event this very click (Slack's action_ts) already stored in its slot, if any.

    The idempotency key chains on the slot's current answer, so a copy of a click that
    arrives after a newer answer (Slack's retry of a request we answered too late) would
    otherwise be stored a second time, as the newest answer.
    """
    action_ts = (feedback.source_ref or {}).get("action_ts")
    if not action_ts:
        return None
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM feedback_events
        WHERE draft_set_id = %s AND kind = %s AND subject = %s AND agent_id = %s
          AND source_ref ->> 'action_ts' = %s
        ORDER BY id LIMIT 1
        """,
        (feedback.draft_set_id, feedback.kind, feedback.subject, feedback.agent_id, action_ts),
    ).fetchone()


def current(conn: psycopg.Connection, draft_set_id: int) -> list[StoredFeedback]:
    """The agents' answers standing in each slot of a draft set, as its card shows them
    (superseded clicks and replies read from the helpdesk left out)."""
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM (
            SELECT DISTINCT ON (kind, subject, agent_id) {COLUMNS}
            FROM feedback_events WHERE draft_set_id = %s AND source <> 'zendesk'
            ORDER BY kind, subject, agent_id, id DESC
        ) latest ORDER BY id
        """,
        (draft_set_id,),
    ).fetchall()


def event_count(conn: psycopg.Connection) -> int:
    """Every click stored, superseded ones included."""
    return conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0]


def events(
    conn: psycopg.Connection, *, draft_set_id: int | None = None, kind: str | None = None
) -> list[StoredFeedback]:
    """Every event in insertion order, superseded ones included."""
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM feedback_events
        WHERE (%(set)s::bigint IS NULL OR draft_set_id = %(set)s)
          AND (%(kind)s::text IS NULL OR kind = %(kind)s)
        ORDER BY id
        """,
        {"set": draft_set_id, "kind": kind},
    ).fetchall()


def agent_stats(conn: psycopg.Connection, agent_id: str, since: datetime) -> AgentStats:
    counts = conn.execute(
        "SELECT kind, count(*) FROM feedback_events WHERE agent_id = %s AND clicked_at >= %s"
        " GROUP BY kind",
        (agent_id, since),
    ).fetchall()
    sets, last = conn.execute(
        "SELECT count(DISTINCT draft_set_id), max(clicked_at) FROM feedback_events"
        " WHERE agent_id = %s AND clicked_at >= %s",
        (agent_id, since),
    ).fetchone()
    adoptions = conn.execute(
        """
        SELECT value, count(*) FROM (
            SELECT DISTINCT ON (draft_set_id) value FROM feedback_events
            WHERE agent_id = %s AND kind = 'adoption' AND clicked_at >= %s
            ORDER BY draft_set_id, id DESC
        ) latest GROUP BY value
        """,
        (agent_id, since),
    ).fetchall()
    return AgentStats(dict(counts), sets, dict(adoptions), last)


# --- the data window ---------------------------------------------------------------------


def standing_events(
    conn: psycopg.Connection,
    cutoff: datetime,
    *,
    clicked: tuple[datetime, datetime] | None = None,
) -> list[StoredFeedback]:
    """The answer standing in each slot as of ``cutoff`` (later clicks and changes unseen);
    with ``clicked`` = [start, end), only those clicked in that window."""
    start, end = clicked or (None, None)
    cur = conn.cursor(row_factory=class_row(StoredFeedback))
    return cur.execute(
        f"""
        SELECT {COLUMNS} FROM (
            SELECT DISTINCT ON (draft_set_id, kind, subject, agent_id) {COLUMNS}
            FROM feedback_events WHERE recorded_at < %(cutoff)s
            ORDER BY draft_set_id, kind, subject, agent_id, id DESC
        ) standing
        WHERE (%(start)s::timestamptz IS NULL OR clicked_at >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR clicked_at < %(end)s)
        ORDER BY clicked_at, id
        """,
        {"cutoff": cutoff, "start": start, "end": end},
    ).fetchall()


@dataclass(frozen=True)
class DuelAnswer:
    """An answer standing on a duel's card: a preference or an adoption, where it was given."""

    draft_set_id: int
    kind: str
    value: str
    draft_id: int | None
    agent_id: str
    subject: str
    source: str
    channel: str | None
    clicked_at: datetime


def duel_answers(
    conn: psycopg.Connection, set_ids: Sequence[int], until: datetime | None = None
) -> list[DuelAnswer]:
    """The preferences and adoptions standing on the draft sets ``set_ids``, now or as of
    ``until`` (clicked before it)."""
    cur = conn.cursor(row_factory=class_row(DuelAnswer))
    return cur.execute(
        """
        SELECT DISTINCT ON (draft_set_id, kind, subject, agent_id)
               draft_set_id, kind, value, draft_id, agent_id, subject, source,
               source_ref->>'channel' AS channel, clicked_at
        FROM feedback_events
        WHERE draft_set_id = ANY(%(sets)s) AND kind IN ('preference', 'adoption')
          AND (%(until)s::timestamptz IS NULL OR clicked_at < %(until)s)
        ORDER BY draft_set_id, kind, subject, agent_id, id DESC
        """,
        {"sets": list(set_ids), "until": until},
    ).fetchall()


@dataclass(frozen=True)
class DuelDecision:
    """What the online test decided for a generator pair, and when."""

    champion: str
    challenger: str
    verdict: str
    action: str  # 'promoted' | 'retired'
    duels: int
    figures: dict
    reason: str
    decided_at: datetime


def duel_decision(conn: psycopg.Connection, champion: str, challenger: str) -> str | None:
    """The action already taken on this pair, if its test has decided."""
    row = conn.execute(
        "SELECT action FROM duel_decisions WHERE kind = 'generator' AND champion = %s"
        " AND challenger = %s",
        (champion, challenger),
    ).fetchone()
    return row[0] if row else None


def record_duel_decision(conn: psycopg.Connection, **row) -> bool:
    """Store a pair's decision once; False when it was already stored."""
    return (
        conn.execute(
            "INSERT INTO duel_decisions (champion, challenger, verdict, action, duels, figures,"
            " reason) VALUES (%(champion)s, %(challenger)s, %(verdict)s, %(action)s,"
            " %(duels)s, %(figures)s, %(reason)s)"
            " ON CONFLICT (kind, champion, challenger) DO NOTHING RETURNING id",
            row,
        ).fetchone()
        is not None
    )


def duel_decisions(
    conn: psycopg.Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DuelDecision]:
    """The online decisions in ``[since, until)``, newest first."""
    cur = conn.cursor(row_factory=class_row(DuelDecision))
    return cur.execute(
        "SELECT champion, challenger, verdict, action, duels, figures, reason, decided_at"
        " FROM duel_decisions WHERE (%(since)s::timestamptz IS NULL OR decided_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR decided_at < %(until)s)"
        " ORDER BY decided_at DESC, id DESC",
        {"since": since, "until": until},
    ).fetchall()


def retire_older_challengers(
    conn: psycopg.Connection, kind: str, version: str, decision: str
) -> int:
    """Challengers of ``kind`` registered before ``version`` retire: only the newest drafts."""
    conn.execute(REGISTRY_LOCK)
    return conn.execute(
        "UPDATE model_registry SET status = 'retired', retired_at = now(), decision = %s"
        " WHERE kind = %s AND status = 'challenger'"
        " AND id < (SELECT id FROM model_registry WHERE kind = %s AND version = %s)",
        (decision, kind, kind, version),
    ).rowcount


def retire_challengers(conn: psycopg.Connection, kind: str, version: str, decision: str) -> int:
    """``version`` retires, and with it any older challenger of its kind (replaced already):
    the next model trained becomes the challenger."""
    conn.execute(REGISTRY_LOCK)
    target = conn.execute(
        "SELECT id FROM model_registry WHERE kind = %s AND version = %s", (kind, version)
    ).fetchone()
    if target is None:
        return 0
    return conn.execute(
        "UPDATE model_registry SET status = 'retired', retired_at = now(), decision = %s"
        " WHERE kind = %s AND status = 'challenger' AND id <= %s",
        (decision, kind, target[0]),
    ).rowcount


# --- runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    id: int
    status: str
    trigger: str
    cutoff: datetime
    config: dict
    counts: dict
    metrics: dict
    decisions: dict
    artefacts: dict
    error: str | None
    started_at: datetime
    finished_at: datetime | None


RUN_COLUMNS = (
    "id, status, trigger, cutoff, config, counts, metrics, decisions, artefacts, error,"
    " started_at, finished_at"
)


def start_run(conn: psycopg.Connection, trigger: str, cutoff: datetime, config: dict) -> int:
    return conn.execute(
        "INSERT INTO flywheel_runs (trigger, cutoff, config) VALUES (%s, %s, %s) RETURNING id",
        (trigger, cutoff, Jsonb(config)),
    ).fetchone()[0]


def finish_run(conn: psycopg.Connection, run_id: int, status: str, **fields) -> None:
    allowed = ("counts", "metrics", "decisions", "artefacts")
    sets = [f"{name} = %s" for name in allowed if name in fields]
    values = [Jsonb(fields[name]) for name in allowed if name in fields]
    conn.execute(
        f"UPDATE flywheel_runs SET status = %s, error = %s, finished_at = now()"
        f"{''.join(', ' + s for s in sets)} WHERE id = %s",
        (status, fields.get("error"), *values, run_id),
    )


def fail_abandoned_runs(conn: psycopg.Connection) -> int:
    """Runs left 'running' by a process that died; called while holding the run lock."""
    return conn.execute(
        "UPDATE flywheel_runs SET status = 'failed', finished_at = now(),"
        " error = 'abandoned: the process running it stopped' WHERE status = 'running'"
    ).rowcount


def runs(conn: psycopg.Connection, limit: int = 10, before: datetime | None = None) -> list[Run]:
    """The newest runs first; with ``before``, those started before it (a past week's)."""
    cur = conn.cursor(row_factory=class_row(Run))
    return cur.execute(
        f"SELECT {RUN_COLUMNS} FROM flywheel_runs"
        " WHERE %(before)s::timestamptz IS NULL OR started_at < %(before)s"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"before": before, "limit": limit},
    ).fetchall()


def save_verdicts(conn: psycopg.Connection, run_id: int, verdicts) -> None:
    with conn.cursor().copy(
        "COPY judge_verdicts (run_id, event_id, judge, keep, reason, rules) FROM STDIN"
    ) as copy:
        for v in verdicts:
            copy.write_row((run_id, v.event_id, v.judge, v.keep, v.reason, list(v.rules)))


def earlier_counts(conn: psycopg.Connection, run_id: int, limit: int) -> list[dict[str, Any]]:
    """The counts of the ``limit`` runs before ``run_id`` that judged clicks, oldest first
    (the judge's history as ``flywheel.judge_watch`` reads it)."""
    rows = conn.execute(
        "SELECT counts FROM flywheel_runs WHERE id < %s AND counts ? 'judge_rules'"
        " ORDER BY id DESC LIMIT %s",
        (run_id, limit),
    ).fetchall()
    return [counts for (counts,) in reversed(rows)]


def filtered_event_ids(conn: psycopg.Connection, run_id: int) -> set[int]:
    """The events a run's judge left out of training."""
    rows = conn.execute(
        "SELECT event_id FROM judge_verdicts WHERE run_id = %s AND NOT keep", (run_id,)
    )
    return {event_id for (event_id,) in rows}


def save_reliability(conn: psycopg.Connection, run_id: int, agents) -> None:
    for a in agents:
        conn.execute(
            "INSERT INTO agent_reliability (run_id, agent_id, events, judge_agreement,"
            " peer_agreement, weight) VALUES (%s, %s, %s, %s, %s, %s)",
            (run_id, a.agent_id, a.events, a.judge_agreement, a.peer_agreement, a.weight),
        )


# reviews of the judge (App Home's review queue, flywheel.judge_review): one standing answer
# per reviewer and event

REVIEWED_KINDS = ("relevance", "missing_knowledge", "preference", "adoption")


def latest_succeeded_run(conn: psycopg.Connection) -> int | None:
    """The latest cycle that succeeded: reviewers are shown its verdicts."""
    row = conn.execute(
        "SELECT id FROM flywheel_runs WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class ReviewCandidate:
    """A verdict a reviewer may be shown, with the click it is about."""

    run_id: int
    event_id: int
    keep: bool
    reason: str
    bucket: str  # 'drop:<the first rule that doubted it>' or 'keep:<kind>'
    sample_key: str  # the seeded order: the same for every reviewer and every look
    kind: str
    value: str
    draft_set_id: int
    draft_id: int | None
    chunk_ids: list[int]
    agent_id: str
    rationale: dict
    clicked_at: datetime


def review_candidates(
    conn: psycopg.Connection, run_id: int, reviewer: str, *, seed: int, per_bucket: int
) -> list[ReviewCandidate]:
    """The first ``per_bucket`` verdicts of each bucket of run ``run_id`` in the seeded order,
    leaving out what ``reviewer`` already reviewed: agents' clicks of the four kinds (not the
    adoptions read from the replies sent in the helpdesk)."""
    cur = conn.cursor(row_factory=class_row(ReviewCandidate))
    return cur.execute(
        """
        SELECT run_id, event_id, keep, reason, bucket, sample_key, kind, value, draft_set_id,
               draft_id, chunk_ids, agent_id, rationale, clicked_at
        FROM (
            SELECT *, row_number() OVER (PARTITION BY bucket ORDER BY sample_key, event_id)
                   AS place
            FROM (
                SELECT v.run_id, v.event_id, v.keep, v.reason,
                       CASE WHEN v.keep THEN 'keep:' || e.kind
                            ELSE 'drop:' || coalesce(v.rules[1], v.judge) END AS bucket,
                       md5(%(seed)s::text || ':' || v.event_id) AS sample_key,
                       e.kind, e.value, e.draft_set_id, e.draft_id, e.chunk_ids, e.agent_id,
                       e.rationale, e.clicked_at
                FROM judge_verdicts v JOIN feedback_events e ON e.id = v.event_id
                WHERE v.run_id = %(run)s AND e.kind = ANY(%(kinds)s) AND e.source <> 'zendesk'
                  AND NOT EXISTS (
                      SELECT 1 FROM judge_reviews r
                      WHERE r.event_id = v.event_id AND r.reviewer_id = %(reviewer)s)
            ) verdicts
        ) ranked
        WHERE place <= %(per_bucket)s
        ORDER BY sample_key, event_id
        """,
        {
            "run": run_id,
            "reviewer": reviewer,
            "seed": seed,
            "per_bucket": per_bucket,
            "kinds": list(REVIEWED_KINDS),
        },
    ).fetchall()


def verdict_kept(conn: psycopg.Connection, run_id: int, event_id: int) -> bool | None:
    """Whether run ``run_id`` kept the event; None when it holds no verdict on it."""
    row = conn.execute(
        "SELECT keep FROM judge_verdicts WHERE run_id = %s AND event_id = %s", (run_id, event_id)
    ).fetchone()
    return row[0] if row else None


def save_review(
    conn: psycopg.Connection,
    run_id: int,
    event_id: int,
    reviewer: str,
    agrees: bool,
    reviewed_at: datetime,
) -> bool:
    """Store ``reviewer``'s answer on run ``run_id``'s verdict on the event, replacing their
    earlier answer on that event (one clicked before the standing answer changes nothing);
    False, and nothing stored, when the run holds no verdict on the event."""
    if verdict_kept(conn, run_id, event_id) is None:
        return False
    conn.execute(
        """
        INSERT INTO judge_reviews (run_id, event_id, reviewer_id, agrees, reviewed_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (event_id, reviewer_id) DO UPDATE
        SET run_id = excluded.run_id, agrees = excluded.agrees,
            reviewed_at = excluded.reviewed_at
        WHERE judge_reviews.reviewed_at <= excluded.reviewed_at
        """,
        (run_id, event_id, reviewer, agrees, reviewed_at),
    )
    return True


@dataclass(frozen=True)
class Review:
    run_id: int
    event_id: int
    reviewer_id: str
    agrees: bool
    reviewed_at: datetime
    keep: bool  # the judge's verdict the reviewer answered


def reviews(
    conn: psycopg.Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Review]:
    """The standing reviews made in ``[since, until)``, with the verdicts they answer."""
    cur = conn.cursor(row_factory=class_row(Review))
    return cur.execute(
        "SELECT r.run_id, r.event_id, r.reviewer_id, r.agrees, r.reviewed_at, v.keep"
        " FROM judge_reviews r JOIN judge_verdicts v USING (run_id, event_id)"
        " WHERE (%(since)s::timestamptz IS NULL OR r.reviewed_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR r.reviewed_at < %(until)s)"
        " ORDER BY r.reviewed_at, r.id",
        {"since": since, "until": until},
    ).fetchall()


# --- the model registry ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    id: int
    kind: str
    version: str
    path: str
    status: str
    run_id: int | None
    embedding_version: str | None
    metrics: dict
    baseline: dict
    decision: str | None
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None


MODEL_COLUMNS = (
    "id, kind, version, path, status, run_id, embedding_version, metrics, baseline, decision,"
    " created_at, promoted_at, retired_at"
)


def models(conn: psycopg.Connection, kind: str | None = None) -> list[ModelRow]:
    cur = conn.cursor(row_factory=class_row(ModelRow))
    return cur.execute(
        f"SELECT {MODEL_COLUMNS} FROM model_registry WHERE (%(k)s::text IS NULL OR kind = %(k)s)"
        " ORDER BY kind, id DESC",
        {"k": kind},
    ).fetchall()


def model(conn: psycopg.Connection, kind: str, version: str) -> ModelRow | None:
    cur = conn.cursor(row_factory=class_row(ModelRow))
    return cur.execute(
        f"SELECT {MODEL_COLUMNS} FROM model_registry WHERE kind = %s AND version = %s",
        (kind, version),
    ).fetchone()


def champion(conn: psycopg.Connection, kind: str) -> ModelRow | None:
    cur = conn.cursor(row_factory=class_row(ModelRow))
    return cur.execute(
        f"SELECT {MODEL_COLUMNS} FROM model_registry WHERE kind = %s AND status = 'champion'",
        (kind,),
    ).fetchone()


def add_model(conn: psycopg.Connection, **row) -> int:
    return conn.execute(
        "INSERT INTO model_registry (kind, version, path, status, run_id, embedding_version,"
        " metrics, baseline, decision) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            row["kind"],
            row["version"],
            row["path"],
            row["status"],
            row.get("run_id"),
            row.get("embedding_version"),
            Jsonb(row.get("metrics", {})),
            Jsonb(row.get("baseline", {})),
            row.get("decision"),
        ),
    ).fetchone()[0]


REGISTRY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('aitl.registry'))"


def crown(conn: psycopg.Connection, kind: str, version: str, decision: str) -> None:
    """Make ``version`` the champion of its kind and record what it replaced, in one
    transaction: the old champion retires."""
    conn.execute(REGISTRY_LOCK)
    current = conn.execute(
        "SELECT version FROM model_registry WHERE kind = %s AND status = 'champion'", (kind,)
    ).fetchone()
    _make_champion(conn, kind, version, decision)
    conn.execute(
        "INSERT INTO model_promotions (kind, version, replaced, reason) VALUES (%s, %s, %s, %s)",
        (kind, version, current[0] if current else None, decision),
    )


@dataclass(frozen=True)
class Promotion:
    id: int
    kind: str
    version: str
    replaced: str | None  # None: the shipped model was live before it
    reason: str | None
    promoted_at: datetime


def undoable_promotion(conn: psycopg.Connection, kind: str) -> Promotion | None:
    """What a rollback of ``kind`` undoes: its latest promotion no rollback has undone, if that
    model is still the champion (a champion crowned before promotions were recorded has none)."""
    cur = conn.cursor(row_factory=class_row(Promotion))
    return cur.execute(
        """
        WITH latest AS (
            SELECT id, kind, version, replaced, reason, promoted_at FROM model_promotions
            WHERE kind = %s AND undone_at IS NULL ORDER BY id DESC LIMIT 1)
        SELECT latest.* FROM latest JOIN model_registry m
          ON m.kind = latest.kind AND m.version = latest.version AND m.status = 'champion'
        """,
        (kind,),
    ).fetchone()


def rollback_targets(conn: psycopg.Connection, kinds: Sequence[str]) -> dict[str, str | None]:
    """What a rollback of each kind's champion brings back (None, or no entry: the shipped
    model), for the registry listings."""
    undoable = {kind: undoable_promotion(conn, kind) for kind in kinds}
    return {kind: p.replaced for kind, p in undoable.items() if p is not None}


def undo(conn: psycopg.Connection, kind: str, promotion: Promotion | None, decision: str) -> None:
    """Undo ``promotion``: the model it replaced is champion again, or with none the kind goes
    back to its shipped model (no champion row). Without a recorded promotion (a champion from
    before they were recorded), the shipped model goes back."""
    conn.execute(REGISTRY_LOCK)
    if promotion is not None:
        conn.execute(
            "UPDATE model_promotions SET undone_at = now(), undone_reason = %s WHERE id = %s",
            (decision, promotion.id),
        )
    if promotion is not None and promotion.replaced is not None:
        _make_champion(conn, kind, promotion.replaced, decision)
    else:
        _retire_champion(conn, kind, decision)


@dataclass(frozen=True)
class ModelChange:
    """One promotion or rollback, as the history lists it."""

    kind: str
    version: str  # the model promoted, or the one rolled back
    change: str  # 'promoted' | 'rolled back'
    other: str | None  # what it replaced, or what went live again (None: the shipped model)
    reason: str | None
    at: datetime

    def words(self, name: Callable[[str], str] = str) -> str:
        """'promoted, replacing r6' or 'rolled back, r6 live again'."""
        return change_words(self.change, self.other, name)


def model_changes(
    conn: psycopg.Connection,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[ModelChange]:
    """Promotions and rollbacks in ``[since, until)``, newest first. A rollback brought back
    what the promotion it undid had replaced."""
    cur = conn.cursor(row_factory=class_row(ModelChange))
    return cur.execute(
        """
        SELECT kind, version, change, other, reason, at FROM (
            SELECT kind, version, 'promoted' AS change, replaced AS other, reason,
                   promoted_at AS at, id, 1 AS step FROM model_promotions
            UNION ALL
            SELECT kind, version, 'rolled back', replaced, undone_reason, undone_at, id, 2
            FROM model_promotions WHERE undone_at IS NOT NULL
        ) changes
        WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
          AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
        ORDER BY at DESC, id DESC, step DESC
        LIMIT %(limit)s
        """,
        {"kind": kind, "since": since, "until": until, "limit": limit},
    ).fetchall()


def _retire_champion(conn: psycopg.Connection, kind: str, decision: str | None = None) -> None:
    """The champion of ``kind`` retires; ``decision`` replaces its reason when given."""
    conn.execute(
        "UPDATE model_registry SET status = 'retired', retired_at = now(),"
        " decision = coalesce(%s, decision) WHERE kind = %s AND status = 'champion'",
        (decision, kind),
    )


def _make_champion(conn: psycopg.Connection, kind: str, version: str, decision: str) -> None:
    _retire_champion(conn, kind)
    conn.execute(
        "UPDATE model_registry SET status = 'champion', promoted_at = now(), retired_at = NULL,"
        " decision = %s WHERE kind = %s AND version = %s",
        (decision, kind, version),
    )


def champions_signature(conn: psycopg.Connection) -> tuple:
    """Changes whenever a champion or challenger changes, or one retires (the online duel
    retiring the untrained LLM adds a row of its own): serving rebuilds its pipeline then."""
    return tuple(
        conn.execute(
            "SELECT kind, version, status FROM model_registry"
            " WHERE status IN ('champion', 'challenger', 'retired') ORDER BY kind, version"
        ).fetchall()
    )


# --- the feedback memory (flywheel/memory.py; tables in migration 0018) -----------------


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered click, as a refresh stores it."""

    event_id: int
    kind: str  # 'relevant' | 'not_relevant' | 'missing'
    chunk_id: int
    agent_id: str
    draft_set_id: int
    ticket_ref: str
    clicked_at: datetime
    version: str
    embedding: Any  # np.ndarray
    brand: str | None


@dataclass(frozen=True)
class MemoryHit:
    """A remembered click near a new ticket, with its ticket's cosine similarity to it."""

    id: int
    kind: str
    chunk_id: int
    agent_id: str
    ticket_ref: str
    clicked_at: datetime
    similarity: float


# the COPY types of MemoryEntry's fields, in order
MEMORY_TYPES = [
    "int8",
    "text",
    "int8",
    "text",
    "int8",
    "text",
    "timestamptz",
    "text",
    "vector",
    "text",
]
MEMORY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('aitl.flywheel.memory'))"


def memory_index_name(version: str) -> str:
    return f"feedback_memory_hnsw_{version}"


def memory_versions(conn: psycopg.Connection) -> dict[int, str]:
    """event id → the embedding version its entry was stored under, for every entry."""
    return dict(conn.execute("SELECT event_id, version FROM feedback_memory").fetchall())


def forget(conn: psycopg.Connection, event_ids: Sequence[int]) -> int:
    return conn.execute(
        "DELETE FROM feedback_memory WHERE event_id = ANY(%s)", (list(event_ids),)
    ).rowcount


def remember(conn: psycopg.Connection, entries: Sequence[MemoryEntry]) -> None:
    with conn.cursor().copy(
        "COPY feedback_memory (event_id, kind, chunk_id, agent_id, draft_set_id, ticket_ref,"
        " clicked_at, version, embedding, brand) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(MEMORY_TYPES)
        for e in entries:
            copy.write_row(
                (
                    e.event_id,
                    e.kind,
                    e.chunk_id,
                    e.agent_id,
                    e.draft_set_id,
                    e.ticket_ref,
                    e.clicked_at,
                    e.version,
                    e.embedding,
                    e.brand,
                )
            )


def index_memory(conn: psycopg.Connection, version: str, dimension: int) -> None:
    """Give ``version``'s entries their own partial HNSW cosine index, and drop the indexes of
    versions that hold no entry any more (the memory follows the live version)."""
    _index_by_version(conn, "feedback_memory", memory_index_name, version, dimension)


def _index_by_version(
    conn: psycopg.Connection,
    table: str,
    index_name: Callable[[str], str],
    version: str,
    dimension: int,
) -> None:
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw"
            " ((embedding::vector({dim})) vector_cosine_ops) WHERE version = {version}"
        ).format(
            index=sql.Identifier(index_name(version)),
            table=sql.Identifier(table),
            dim=sql.Literal(dimension),
            version=sql.Literal(version),
        )
    )
    held = {
        v
        for (v,) in conn.execute(
            sql.SQL("SELECT DISTINCT version FROM {}").format(sql.Identifier(table))
        )
    }
    prefix = index_name("").replace("_", "\\_")
    indexes = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
        (table, prefix + "%"),
    ).fetchall()
    keep = {index_name(v) for v in held | {version}}
    for (name,) in indexes:
        if name not in keep:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def nearest_memory(
    conn: psycopg.Connection,
    version: str,
    query: Any,
    *,
    limit: int,
    brand: str | None = None,
) -> list[MemoryHit]:
    """The ``limit`` entries of ``version`` whose tickets are nearest to ``query`` (HNSW); with
    ``brand``, only that brand's tickets and those of no known brand."""
    return _nearest_by_version(
        conn,
        "feedback_memory",
        "id, kind, chunk_id, agent_id, ticket_ref, clicked_at",
        MemoryHit,
        version,
        query,
        limit=limit,
        brand=brand,
    )


def _nearest_by_version(
    conn: psycopg.Connection,
    table: str,
    columns: str,
    row: type,
    version: str,
    query: Any,
    *,
    limit: int,
    brand: str | None,
    where: str = "",
    params: dict[str, Any] | None = None,
) -> list:
    """``columns`` and ``similarity`` of the ``limit`` rows of ``table`` under ``version``
    nearest to ``query``, through its partial HNSW index (``_index_by_version``); with
    ``brand``, that brand's rows and those of no known brand; ``where`` (SQL on ``params``)
    filters further. A filtered search scans on until ``limit`` rows pass (pgvector's
    iterative scan), rather than returning what survived of the first candidates."""
    dim = sql.Literal(len(query))
    distance = sql.SQL("((embedding::vector({dim})) <=> %(q)s::vector({dim}))").format(dim=dim)
    brand_filter = " AND (brand IS NULL OR brand = %(brand)s)" if brand else ""
    conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(40, limit))))
    if brand or where:
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    cur = conn.cursor(row_factory=class_row(row))
    return cur.execute(
        sql.SQL(
            "SELECT {columns}, 1 - {distance} AS similarity FROM {table}"
            " WHERE version = {version}{filters} ORDER BY {distance} LIMIT %(limit)s"
        ).format(
            columns=sql.SQL(columns),
            distance=distance,
            table=sql.Identifier(table),
            version=sql.Literal(version),
            filters=sql.SQL(brand_filter + where),
        ),
        {"q": query, "brand": brand, "limit": limit, **(params or {})},
    ).fetchall()


def latest_reliability(conn: psycopg.Connection) -> dict[str, float]:
    """Each agent's weight as the latest cycle that estimated any stored it ({} before one)."""
    rows = conn.execute(
        "SELECT agent_id, weight FROM agent_reliability WHERE run_id ="
        " (SELECT max(run_id) FROM agent_reliability)"
    ).fetchall()
    return {agent: float(weight) for agent, weight in rows}


@dataclass(frozen=True)
class MemoryRefresh:
    version: str | None
    entries: int
    added: int
    removed: int
    dropped: int
    seconds: float
    refreshed_at: datetime
    replies: int = 0  # replies held (memory_replies), beside the clicks


def record_memory_refresh(
    conn: psycopg.Connection,
    *,
    version: str | None,
    entries: int,
    added: int,
    removed: int,
    dropped: int,
    seconds: float,
    replies: int = 0,
) -> None:
    conn.execute(
        "INSERT INTO feedback_memory_refreshes (version, entries, added, removed, dropped,"
        " seconds, replies) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (version, entries, added, removed, dropped, seconds, replies),
    )


def last_memory_refresh(conn: psycopg.Connection) -> MemoryRefresh | None:
    cur = conn.cursor(row_factory=class_row(MemoryRefresh))
    return cur.execute(
        "SELECT version, entries, added, removed, dropped, seconds, refreshed_at, replies"
        " FROM feedback_memory_refreshes ORDER BY id DESC LIMIT 1"
    ).fetchone()


@dataclass(frozen=True)
class MemorySize:
    entries: int
    tickets: int
    chunks: int
    agents: dict[str, int]  # agent → entries
    kinds: dict[str, int]  # 'relevant' | 'not_relevant' | 'missing' → entries


def memory_size(conn: psycopg.Connection) -> MemorySize:
    entries, tickets, chunks = conn.execute(
        "SELECT count(*), count(DISTINCT ticket_ref), count(DISTINCT chunk_id) FROM feedback_memory"
    ).fetchone()
    agents = conn.execute(
        "SELECT agent_id, count(*) FROM feedback_memory GROUP BY agent_id ORDER BY 2 DESC, 1"
    ).fetchall()
    kinds = conn.execute("SELECT kind, count(*) FROM feedback_memory GROUP BY kind").fetchall()
    return MemorySize(entries, tickets, chunks, dict(agents), dict(kinds))


# --- replies worth reusing (flywheel/memory_replies.py; table in migration 0019) ---------


@dataclass(frozen=True)
class ReplyEntry:
    """One card's reply as a refresh stores it."""

    draft_set_id: int
    events: tuple[int, ...]  # the kept adoptions it stands on
    ticket_ref: str
    text: str
    origin: str  # 'sent' | 'edited' | 'as_is'
    label: str | None
    citations: tuple[int, ...]
    agents: tuple[str, ...]
    adopted_at: datetime
    version: str
    embedding: Any  # np.ndarray
    brand: str | None


@dataclass(frozen=True)
class ReplyHit:
    """A remembered reply near a new ticket, with its ticket's cosine similarity to it."""

    id: int
    draft_set_id: int
    ticket_ref: str
    text: str
    origin: str
    citations: list[int]
    agents: list[str]
    adopted_at: datetime
    similarity: float


def reply_index_name(version: str) -> str:
    return f"memory_replies_hnsw_{version}"


def reply_keys(conn: psycopg.Connection) -> dict[int, tuple[tuple[int, ...], str]]:
    """Draft set → (the events its reply stands on, its embedding version), for every reply."""
    rows = conn.execute("SELECT draft_set_id, events, version FROM memory_replies").fetchall()
    return {set_id: (tuple(events), version) for set_id, events, version in rows}


def forget_replies(conn: psycopg.Connection, set_ids: Sequence[int]) -> int:
    return conn.execute(
        "DELETE FROM memory_replies WHERE draft_set_id = ANY(%s)", (list(set_ids),)
    ).rowcount


def remember_replies(conn: psycopg.Connection, entries: Sequence[ReplyEntry]) -> None:
    if not entries:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO memory_replies (draft_set_id, events, ticket_ref, text, origin, label,"
            " citations, agents, adopted_at, version, embedding, brand) VALUES (%s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    e.draft_set_id,
                    list(e.events),
                    e.ticket_ref,
                    e.text,
                    e.origin,
                    e.label,
                    list(e.citations),
                    list(e.agents),
                    e.adopted_at,
                    e.version,
                    e.embedding,
                    e.brand,
                )
                for e in entries
            ],
        )


def index_replies(conn: psycopg.Connection, version: str, dimension: int) -> None:
    """As ``index_memory``, for the replies."""
    _index_by_version(conn, "memory_replies", reply_index_name, version, dimension)


def nearest_replies(
    conn: psycopg.Connection,
    version: str,
    query: Any,
    *,
    limit: int,
    brand: str | None = None,
    other_than: str | None = None,
) -> list[ReplyHit]:
    """The ``limit`` replies of ``version`` whose tickets are nearest to ``query`` (HNSW); with
    ``brand``, only that brand's and those of no known brand; ``other_than`` leaves out one
    ticket's own replies (a ticket is not offered what was already sent on it)."""
    return _nearest_by_version(
        conn,
        "memory_replies",
        "id, draft_set_id, ticket_ref, text, origin, citations, agents, adopted_at",
        ReplyHit,
        version,
        query,
        limit=limit,
        brand=brand,
        where=" AND ticket_ref IS DISTINCT FROM %(other)s",
        params={"other": other_than},
    )


def reply_count(conn: psycopg.Connection) -> tuple[int, int]:
    """Replies held, and the tickets they come from."""
    return conn.execute(
        "SELECT count(*), count(DISTINCT ticket_ref) FROM memory_replies"
    ).fetchone()
