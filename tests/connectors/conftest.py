"""The connector's tests run against a Zendesk sandbox on a free local port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandboxes.zendesk.server import ZendeskSandbox
from tests.support.sandboxes import zendesk_server


@pytest.fixture
def sandbox() -> Iterator[ZendeskSandbox]:
    with zendesk_server() as box:
        yield box
