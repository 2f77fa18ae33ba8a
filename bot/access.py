"""Who may do what: agents annotate, admins configure. Read from the effective settings."""

from __future__ import annotations

from collections.abc import Callable

from aitl.core.settings import Settings
from bot.directory import Directory

NOT_AN_AGENT = (
    "Only support agents can rate drafts, and you are not in the agents group{where}. "
    "Nothing was recorded. Ask an AITL admin to add you."
)
NOT_AN_ADMIN = "Only AITL admins can change this. Nothing was changed."
NOT_A_MANAGER = "The full digest is for AITL managers and admins. Ask an AITL admin for access."
NOT_A_REVIEWER = "Only AITL admins and managers review the judge. Nothing was recorded."


class Access:
    def __init__(self, directory: Directory, config: Callable[[], Settings]) -> None:
        self.directory = directory
        self.config = config

    def is_admin(self, user_id: str) -> bool:
        s = self.config()
        if user_id in s.slack_admin_ids:
            return True
        group = s.slack_admins_usergroup
        return bool(group) and user_id in self.directory.usergroup_members(group)

    def admins(self) -> frozenset[str]:
        """Everyone who is an admin: by id in settings, and the admins group's members."""
        s = self.config()
        group = s.slack_admins_usergroup
        members = self.directory.usergroup_members(group) if group else frozenset()
        return frozenset(s.slack_admin_ids) | members

    def is_agent(self, user_id: str) -> bool:
        """Members of the agents group or channel; anyone when neither is set (App Home warns)."""
        s = self.config()
        group, channel = s.slack_agents_usergroup, s.slack_agents_channel
        if not group and not channel:
            return True
        if group and user_id in self.directory.usergroup_members(group):
            return True
        if channel and user_id in self.directory.channel_members(channel):
            return True
        return self.is_admin(user_id)

    def is_manager(self, user_id: str) -> bool:
        s = self.config()
        if user_id in s.slack_manager_ids:
            return True
        group = s.slack_managers_usergroup
        return bool(group) and user_id in self.directory.usergroup_members(group)

    def refusal(self) -> str:
        s = self.config()
        where = []
        if s.slack_agents_usergroup:
            where.append(f"<!subteam^{s.slack_agents_usergroup}>")
        if s.slack_agents_channel:
            where.append(f"<#{s.slack_agents_channel}>")
        return NOT_AN_AGENT.format(where=f" ({' or '.join(where)})" if where else "")
