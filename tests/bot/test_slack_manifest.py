"""The Slack app manifest gives the bot exactly what it uses: every Web API method the bot
calls is covered by a scope, and Slack reaches the endpoints the web app serves."""

from __future__ import annotations

import re

import yaml

from aitl.core.settings import PROJECT_ROOT
from bot.ask import COMMAND

SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "users_lookupByEmail": "users:read.email",
    "usergroups_users_list": "usergroups:read",
    "conversations_members": "channels:read",
    "users_info": "users:read",
    "conversations_open": "im:write",
    "files_upload_v2": "files:write",
    "conversations_history": "channels:history",
    "conversations_replies": "channels:history",
}
SLACK_FAMILIES = ("chat", "users", "usergroups", "conversations", "views", "files", "reactions")
NO_SCOPE = {"views_open", "views_publish", "views_update"}  # allowed by any bot token


def manifest() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "manifest.yml").read_text())


def called_methods() -> set[str]:
    code = "\n".join(p.read_text() for p in (PROJECT_ROOT / "bot").glob("*.py"))
    # through the WebClient (client.x) or inside our SlackClient subclass (self.x)
    families = "|".join(SLACK_FAMILIES)
    return set(re.findall(rf"\.((?:{families})_[A-Za-z0-9_]+)", code))


def test_every_method_the_bot_calls_has_its_scope():
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    called = called_methods()
    assert called, "the bot calls Slack through its WebClient"
    unknown = called - set(SCOPES) - NO_SCOPE
    assert not unknown, f"add these methods to SCOPES with their scope: {unknown}"
    assert {SCOPES[m] for m in called if m in SCOPES} <= scopes
    assert "commands" in scopes and "users:read.email" in scopes
    # a post is looked up before it is repeated, wherever it went
    assert {"channels:history", "groups:history", "im:history", "mpim:history"} <= scopes


def test_slack_reaches_our_endpoint_for_events_interactivity_options_and_the_command():
    settings = manifest()["settings"]
    urls = {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        settings["interactivity"]["message_menu_options_url"],
        *(c["url"] for c in manifest()["features"]["slash_commands"]),
    }
    assert {url.rsplit("/", 2)[-2:] == ["slack", "events"] for url in urls} == {True}
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert manifest()["features"]["app_home"]["home_tab_enabled"] is True
    assert [c["command"] for c in manifest()["features"]["slash_commands"]] == [COMMAND]
