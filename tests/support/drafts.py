"""Draft sets written straight into the tables, for tests of what happens after drafting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

PRODUCER = {"variant": "CONCISE", "role": "champion"}


def draft_set(
    conn,
    *,
    ticket_ref: str = "zendesk:1",
    texts: Sequence[str] = ("Draft A text.", "Draft B text."),
    citations: Sequence[int] = (),
    roles: Sequence[str] = ("champion", "champion"),
    created_at: datetime | None = None,
) -> tuple[int, dict[str, int]]:
    """A draft set with drafts A and B citing ``citations``; returns its id and draft ids.

    ``roles`` are the producers' roles of A and B (("champion", "challenger") for an A/B
    test); ``created_at`` backdates the set (default: now).
    """
    set_id = conn.execute(
        "INSERT INTO rag_draft_sets (ticket_ref, query, retrieved, context, timings_ms,"
        " created_at) VALUES (%s, 'query', '[]', %s, '{}', coalesce(%s, now())) RETURNING id",
        (ticket_ref, list(citations), created_at),
    ).fetchone()[0]
    drafts = {}
    for label, text, role in zip("AB", texts, roles, strict=True):
        drafts[label] = conn.execute(
            "INSERT INTO rag_drafts (draft_set_id, label, text, citations, producer)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (
                set_id,
                label,
                text,
                list(citations),
                Jsonb({**PRODUCER, "role": role}),
            ),
        ).fetchone()[0]
    return set_id, drafts


def live_chunks(conn, limit: int = 3) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM kb_chunks WHERE retired_at IS NULL ORDER BY id LIMIT %s", (limit,)
    ).fetchall()
    return [r[0] for r in rows]
