"""Who is in a user group or channel, from Slack, cached for a while.

Authorisation runs on every click and Slack must be acked within 3 s, so membership is
cached (``slack_membership_ttl_s``); when Slack fails, a stale answer is better than none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient

from bot import slack_api
from bot.exceptions import BotError


class Directory:
    def __init__(
        self, client: WebClient, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._emails: dict[str, tuple[float, str | None]] = {}

    def usergroup_members(self, group_id: str) -> frozenset[str]:
        return self._cached(f"group:{group_id}", lambda: self._fetch_group(group_id))

    def channel_members(self, channel_id: str) -> frozenset[str]:
        return self._cached(f"channel:{channel_id}", lambda: self._fetch_channel(channel_id))

    def user_by_email(self, email: str) -> str | None:
        """The Slack user with this email, or None; used to mention a ticket's assignee."""
        key = email.strip().lower()
        with self._lock:
            hit = self._emails.get(key)
        if hit and self.clock() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            response = slack_api.call(self.client.users_lookupByEmail, email=key)
            user_id = response["user"]["id"]
        except BotError:
            user_id = None
        with self._lock:
            self._emails[key] = (self.clock(), user_id)
        return user_id

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, key: str, fetch: Callable[[], frozenset[str]]) -> frozenset[str]:
        with self._lock:
            hit = self._cache.get(key)
        if hit and self.clock() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            members = fetch()
        except BotError:
            if hit:
                return hit[1]
            raise
        with self._lock:
            self._cache[key] = (self.clock(), members)
        return members

    def _fetch_group(self, group_id: str) -> frozenset[str]:
        response = slack_api.call(self.client.usergroups_users_list, usergroup=group_id)
        return frozenset(response.get("users", []))

    def _fetch_channel(self, channel_id: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = None
        while True:
            response = slack_api.call(
                self.client.conversations_members, channel=channel_id, limit=1000, cursor=cursor
            )
            members.update(response.get("members", []))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return frozenset(members)
