"""Slack Bolt app: draft threads, buttons, modals, App Home, digest posting."""
