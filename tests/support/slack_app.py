"""The product's web app on loopback, talking to the Zendesk sandbox, and the signed Slack
requests tests send it: fixtures (``zendesk``, ``services``, ``web``; a test module brings its
own ``slack`` and ``settings``) and the clicks and modal submissions of an agent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from aitl.app.web import create_app
from aitl.app.wiring import build_services
from aitl.core.queue import build_deferrer
from aitl.core.servers import serve_in_thread
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import SUPPORT_CHANNEL, encode_interactivity
from tests.support.sandboxes import connected_settings, zendesk_server

ADMIN = "U0ADMIN"
OUTSIDER = "U0OUTSIDER"  # in #support, not in the agents' group


@contextmanager
def slack_with_admin_and_outsider() -> Iterator[SlackSandbox]:
    """The Slack sandbox on loopback with an admin (ada) and an outsider (olly) added."""
    box = SlackSandbox()
    box.add_user(ADMIN, "ada", "ada@sandbox.example")
    box.add_user(OUTSIDER, "olly", "olly@sandbox.example")
    box.add_member(SUPPORT_CHANNEL, OUTSIDER)
    with serve(box):
        yield box


@pytest.fixture(name="slack")
def slack_fixture() -> Iterator[SlackSandbox]:
    """A module imports this (with ``admin_settings_fixture``) to talk to the local Slack."""
    with slack_with_admin_and_outsider() as box:
        yield box


@pytest.fixture(name="settings")
def admin_settings_fixture(kb_settings, slack, zendesk, tmp_path):
    """Settings connected to both sandboxes, with ``ADMIN`` as the one admin."""
    return connected_settings(kb_settings, slack, zendesk, tmp_path, slack_admin_ids=[ADMIN])


@pytest.fixture
def zendesk():
    with zendesk_server() as box:
        yield box


@pytest.fixture
def services(settings, kb_db):
    return build_services(settings, kb_db, build_deferrer(kb_db.url))


@pytest.fixture
def web(settings, kb_db):
    with serve_in_thread(create_app(settings, database=kb_db)) as server:
        yield server


def post(slack, web, body: bytes, **headers) -> httpx.Response:
    signed = slack.signed_headers(body) | headers
    return httpx.post(f"{web.url}/slack/events", content=body, headers=signed, timeout=10)


def click(slack, web, user, message, action_id, *, block_id=None, **kwargs) -> httpx.Response:
    payload = slack.block_actions(
        user, message["channel"], message["ts"], action_id, block_id, **kwargs
    )
    return post(slack, web, encode_interactivity(payload))


def relevance_block(card) -> tuple[str, str]:
    block = next(b for b in card["blocks"] if b.get("block_id", "").startswith("aitl.rel."))
    return block["block_id"], block["elements"][0]["value"]


def submit(slack, web, user, values) -> httpx.Response:
    view = opened(slack, user)
    body = encode_interactivity(slack.view_submission(user, view["id"], values))
    return post(slack, web, body)


def opened(slack, user):
    """The user's top modal: views.open runs just after the ack, so wait for it."""
    wait_for(lambda: slack.open_views(user))
    return slack.open_views(user)[-1]


def select(action_id, value):
    return {action_id: {"type": "static_select", "selected_option": {"value": value}}}


def text_input(action_id, value):
    return {action_id: {"type": "plain_text_input", "value": value}}


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
