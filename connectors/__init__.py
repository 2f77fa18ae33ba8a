"""Zendesk: webhook receiver, incremental export, Help Center sync, write-back."""
