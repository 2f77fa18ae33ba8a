"""Simulated support agents: what they click (``policy``) and how they click it in the Slack
sandbox's page (``sandbox_agent``)."""
