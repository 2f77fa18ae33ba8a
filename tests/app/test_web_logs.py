"""What a served ``aitl web`` writes to its log: uvicorn's access lines (method, path, status)
next to our own records, every one masked, and no ``--- Logging error ---`` block. The secret
masking once rewrote each record's arguments, which uvicorn's access formatter unpacks: every
request then logged a formatting error instead of its access line."""

from __future__ import annotations

import httpx

from tests.support import processes

TOKEN = "xoxb-1234567890-abcdefghijkl"


def test_a_served_run_logs_access_lines_masked_and_no_logging_error(settings, tmp_path):
    web, url = processes.start_web(settings, tmp_path / "web")
    try:
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{url}/nowhere", params={"token": TOKEN}, timeout=10).status_code == 404
        refused = httpx.post(f"{url}/slack/events", content=b"{}", timeout=10)
        assert refused.status_code == 503  # Slack is not configured in these settings
        web.wait_for_output("/nowhere", 10, "the access line of the last request")
    finally:
        web.stop()
    log = web.log()
    assert "Logging error" not in log
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert f'"POST /slack/events HTTP/1.1" {refused.status_code}' in log
    access = next(line for line in log.splitlines() if "/nowhere" in line)
    assert TOKEN not in log and "[secret]" in access and access.rstrip().endswith("404 Not Found")
