"""The local Zendesk: Support, the incremental export, Help Center, webhooks and triggers."""
