"""What the connector's tests share: settings pointed at a Zendesk sandbox, a worker that runs
the connector's queued jobs to completion, and a query helper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aitl.core.queue import build_app
from aitl.core.settings import Settings
from connectors import jobs
from sandboxes.zendesk.server import ZendeskSandbox
from tests.conftest import make_settings


def sandbox_settings(
    kb_settings: Settings, sandbox: ZendeskSandbox, data_dir: Path, **overrides: Any
) -> Settings:
    """The knowledge-base database, with Zendesk pointed at ``sandbox``."""
    values: dict[str, Any] = {
        "zendesk_base_url": sandbox.url,
        "zendesk_email": sandbox.agent_email,
        "zendesk_api_token": sandbox.api_token,
        "zendesk_timeout_s": 2,
    }
    return make_settings(
        kb_settings.database_url.get_secret_value(), data_dir, **(values | overrides)
    )


def run_worker(services) -> None:
    """Run every queued connector job (and the jobs they queue) to completion, then return."""
    build_app(services.db.url, [jobs.blueprint()]).run_worker(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"zendesk": services},
    )


def rows(db, sql: str, *args) -> list[tuple]:
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()
