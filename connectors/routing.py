"""Which Slack channel a ticket's thread goes to: admin rules by brand, group or tag."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.store import StoredTicket

KEYS = ("brand_id", "group_id", "tag")


def validate(routes: Sequence[dict[str, str]]) -> list[str]:
    """Problems with the routing table, phrased for the admin (empty when it is fine)."""
    problems = []
    for i, rule in enumerate(routes, start=1):
        keys = [k for k in KEYS if k in rule]
        if len(keys) != 1 or not rule.get("channel"):
            problems.append(
                f"AITL_SLACK_ROUTES rule {i}: needs exactly one of {', '.join(KEYS)} and a channel"
            )
    return problems


def route(
    ticket: StoredTicket, routes: Sequence[dict[str, str]], default: str | None
) -> str | None:
    """First matching rule wins; otherwise the default channel (None: not routed)."""
    for rule in routes:
        if "brand_id" in rule and str(ticket.brand_id) == str(rule["brand_id"]):
            return rule["channel"]
        if "group_id" in rule and str(ticket.group_id) == str(rule["group_id"]):
            return rule["channel"]
        if "tag" in rule and rule["tag"] in ticket.tags:
            return rule["channel"]
    return default
