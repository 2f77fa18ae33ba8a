"""AITL: an agent-in-the-loop copilot for customer support."""

__version__ = "0.1.0"
