"""Waiting for a web app in the test's process to report ready."""

from __future__ import annotations

import time

import httpx
from starlette.testclient import TestClient


def ready(client: TestClient, timeout: float = 60) -> httpx.Response:
    """/healthz once the process has loaded its models (it says "starting" until then)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/healthz")
        if response.json().get("status") != "starting" or time.monotonic() > deadline:
            return response
        time.sleep(0.1)
