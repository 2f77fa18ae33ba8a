"""The weekly digest's Slack side: sending it once per recipient and week, its Block Kit, the
full report modal and the Help Center drafts of its knowledge gaps."""
