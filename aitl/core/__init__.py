"""The floor every room stands on: settings, the database and its migrations, the job queue,
the leader lock, logs, secrets, admin overrides and PII redaction. It imports no product room."""
