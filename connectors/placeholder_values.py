"""What a macro's placeholders render to for one stored ticket (rag/placeholders.py renders).

``current_user`` is the agent who will send the reply. Zendesk fills it with whoever applies
the macro; a draft is written before anyone does, so it is the ticket's assignee at draft time
(no assignee: no value, and the sentence that needed one is left out of the draft).

``satisfaction.rating_url`` is the ticket's rating page on the account's own host,
``/requests/<id>/satisfaction/new``. The link Zendesk puts in its own emails adds a one-time
token no API hands out, so ours asks a requester who is not signed in to sign in first.
``ticket.link`` is the stored ticket URL, ``ticket.url`` the same without its scheme, as
Zendesk writes them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from connectors.store import StoredTicket
from rag import placeholders as p


def ticket_values(ticket: StoredTicket, base_url: str | None = None) -> dict[str, str]:
    """The known placeholders that have a value for ``ticket``; ``base_url`` is the Zendesk
    account's (the client's), else the origin of the stored ticket URL."""
    base = (base_url or _origin(ticket.url)).rstrip("/")
    values = {
        p.TICKET_ID: str(ticket.ticket_id),
        p.TICKET_TITLE: ticket.subject,
        **_person(p.REQUESTER_NAME, p.REQUESTER_FIRST_NAME, ticket.requester_name),
        **_person(p.ASSIGNEE_NAME, p.ASSIGNEE_FIRST_NAME, ticket.assignee_name),
        **_person(p.AGENT_NAME, p.AGENT_FIRST_NAME, ticket.assignee_name),
    }
    if ticket.url:
        values[p.TICKET_LINK] = ticket.url
        values[p.TICKET_URL] = ticket.url.split("://", 1)[-1]
    if base:
        values[p.RATING_URL] = f"{base}/requests/{ticket.ticket_id}/satisfaction/new"
    return {name: value for name, value in values.items() if value and value.strip()}


def _person(full: str, first: str, name: str | None) -> dict[str, str]:
    """A person's full name and first name (its first word), as Zendesk splits a user's name."""
    name = " ".join((name or "").split())
    return {full: name, first: name.split(" ", 1)[0]} if name else {}


def _origin(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
