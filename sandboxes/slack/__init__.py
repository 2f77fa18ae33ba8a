"""The local Slack: the Web API the bot calls, the workspace behind it, and a page to click in."""
