"""The reply an agent actually sent, as feedback of its own.

The connector compares each public agent reply with the drafts shown before it (as is, edited,
not used; which draft was closest) and hands it here. It is stored as an adoption event in a
slot of its own (subject ``sent_reply``, source ``zendesk``, the helpdesk author as agent), so
the judge can weigh the agents' clicks against what was really sent, and the datasets learn
from the sent text (a preference pair of the reply over the draft it started from).
"""

from __future__ import annotations

import psycopg

from flywheel import store
from flywheel.feedback import SENT_REPLY, Feedback, StoredFeedback
from rag import store as rag_store
from rag.models import SentReply


def record_sent_reply(conn: psycopg.Connection, reply: SentReply) -> StoredFeedback | None:
    """One event per compared reply, in the caller's transaction; None when the draft set is
    gone. The compared draft is the one the reply is closest to, unless none was used."""
    info = rag_store.draft_set_infos(conn, [reply.draft_set_id]).get(reply.draft_set_id)
    if info is None:
        return None
    closest = info.drafts.get(reply.closest_label)
    feedback = Feedback(
        kind="adoption",
        value=reply.adoption,
        draft_set_id=reply.draft_set_id,
        agent_id=f"zendesk:{reply.author}",
        clicked_at=reply.sent_at,
        subject=SENT_REPLY,
        draft_id=closest.id if closest is not None else None,
        rationale={
            "label": reply.closest_label,
            "sent_reply": reply.body,
            "similarity": {k: round(v, 4) for k, v in reply.similarity.items()},
        },
        source="zendesk",
        source_ref={"comment_id": reply.comment_id},
    )
    event, _ = store.record(
        conn,
        feedback,
        ticket_ref=reply.ticket_ref,
        draft_ids=[d.id for d in info.drafts.values()],
        shown_at=min(info.created_at, reply.sent_at),
    )
    return event
