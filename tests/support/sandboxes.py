"""The local Zendesk server, and settings that point the product at both sandboxes, shared by
the tests that drive the product end to end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aitl.core.queue import build_app
from aitl.core.servers import serve_in_thread
from aitl.core.settings import Settings
from bot import jobs as bot_jobs
from connectors import jobs as zendesk_jobs
from connectors import setup
from sandboxes.slack.server import SlackSandbox
from sandboxes.slack.state import AGENTS_GROUP, BOT_TOKEN, SIGNING_SECRET, SUPPORT_CHANNEL
from sandboxes.zendesk.server import ZendeskSandbox
from sandboxes.zendesk.server import create_app as zendesk_app
from tests.conftest import make_settings


@contextmanager
def zendesk_server() -> Iterator[ZendeskSandbox]:
    """A Zendesk sandbox on a free local port; webhooks are delivered when the test says."""
    box = ZendeskSandbox(deliver_in_background=False)
    with serve_in_thread(zendesk_app(box)) as server:
        box.url = server.url
        yield box
    box.close()


def connected_settings(
    kb_settings: Settings, slack: SlackSandbox, zendesk: ZendeskSandbox, data_dir, **overrides
) -> Settings:
    """The knowledge-base database, with Zendesk and Slack pointed at the sandboxes."""
    return make_settings(
        kb_settings.database_url.get_secret_value(),
        data_dir,
        zendesk_base_url=zendesk.url,
        zendesk_email=zendesk.agent_email,
        zendesk_api_token=zendesk.api_token,
        zendesk_timeout_s=2,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=f"{slack.base_url}/api/",
        slack_default_channel=SUPPORT_CHANNEL,
        slack_agents_usergroup=AGENTS_GROUP,
        **overrides,
    )


def run_worker(services) -> None:
    """Run every queued job (and the jobs they queue) to completion, then return."""
    build_app(services.zendesk.db.url, [zendesk_jobs.blueprint(), bot_jobs.blueprint()]).run_worker(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"zendesk": services.zendesk, "slack": services.slack},
    )


def ticket_thread(services, zendesk, slack, web, subject, body):
    """A Zendesk ticket through webhook and worker to its Slack thread; returns the card."""
    setup.connect(
        services.zendesk,
        email=zendesk.agent_email,
        api_token=zendesk.api_token,
        public_url=web.url,
    )
    ticket = zendesk.create_ticket(subject, body, "jane@example.com", priority="high")
    zendesk.deliver_pending()
    run_worker(services)
    parent = next(m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"])
    replies = slack.replies(SUPPORT_CHANNEL, parent["ts"])
    assert len(replies) == 1
    return ticket, parent, {**replies[0], "channel": SUPPORT_CHANNEL}
