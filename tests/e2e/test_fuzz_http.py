"""Hostile requests against the real web app on a real database: generated Slack and Zendesk
payloads (mostly validly signed, so the parsers behind the signature check are exercised),
forged and replayed signatures, wrong content types, huge and lying bodies, deep JSON.
Each answer is under 500, each refusal names its reason, and nothing is stored.

tests/e2e/test_fuzz_parsers.py feeds the parsers directly; the two files together send well over
10,000 generated inputs (each test asserts its own share).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from aitl.app.web import create_app
from aitl.core.servers import serve_in_thread
from connectors import signature
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import BOT_TOKEN, SIGNING_SECRET, SUPPORT_CHANNEL
from tests.conftest import make_settings
from tests.support import fuzz
from tests.support.health import ready

ZENDESK_SECRET = "whsec-fuzz"
MAX_BYTES = 10_000  # the smallest limit Settings allow for Slack: huge bodies stay cheap
STORED = {
    "feedback_events": "SELECT count(*) FROM feedback_events",
    "zendesk_events": "SELECT count(*) FROM zendesk_events",
    "jobs": "SELECT count(*) FROM procrastinate_jobs",
    "tickets": "SELECT count(*) FROM zendesk_tickets",
    "cards": "SELECT count(*) FROM slack_cards",
    "admin_settings": "SELECT count(*) FROM admin_settings",
}
SLACK_EXAMPLES, ZENDESK_EXAMPLES, FORGED_EXAMPLES, TYPES_EXAMPLES = 2_000, 1_200, 300, 200
SANDBOX_EXAMPLES = 200


@pytest.fixture
def slack() -> Iterator[SlackSandbox]:
    box = SlackSandbox()
    box.add_user(fuzz.OUTSIDER, "olly", "olly@sandbox.example")
    box.add_member(SUPPORT_CHANNEL, fuzz.OUTSIDER)
    with serve(box):
        yield box


@pytest.fixture
def client(database_url, tmp_path, db, slack) -> Iterator[TestClient]:
    settings = make_settings(
        database_url,
        tmp_path,
        zendesk_webhook_secret=ZENDESK_SECRET,
        zendesk_webhook_max_bytes=4_096,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=f"{slack.base_url}/api/",
        slack_default_channel=SUPPORT_CHANNEL,
        slack_max_body_bytes=MAX_BYTES,
    )
    with TestClient(create_app(settings, database=db), raise_server_exceptions=True) as test:
        ready(test)
        yield test


def counts(db) -> dict[str, int]:
    with db.connection() as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in STORED.items()}


def slack_post(client, body: bytes, content_type: str, *, timestamp: int | None = None, **extra):
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": fuzz.slack_signature(SIGNING_SECRET, body, stamp),
    } | extra
    return client.post("/slack/events", content=body, headers=headers)


def zendesk_post(client, body: bytes, *, when: datetime | None = None, **extra):
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": signature.sign(ZENDESK_SECRET, stamp, body),
    } | extra
    return client.post("/zendesk/webhook", content=body, headers=headers)


def test_signed_slack_payloads_of_every_type_never_fail_or_store(client, db, slack):
    before, sent = counts(db), []

    @given(fuzz.slack_requests(f"{slack.base_url}/response/R0UNKNOWN"))
    def check(request):
        body, content_type = request
        response = slack_post(client, body, content_type)
        sent.append(response.status_code)
        fuzz.assert_refusal_is_clear(response)

    fuzz.run(check, SLACK_EXAMPLES)
    assert counts(db) == before
    assert len(sent) >= SLACK_EXAMPLES and {200, 400} <= set(sent)


def test_signed_zendesk_bodies_are_stored_only_when_valid(client, db):
    sent = []

    @given(fuzz.zendesk_bodies(), st.integers(0, 10**6))
    def check(body, nonce):
        # a fresh timestamp per request, so a repeated body is a redelivery, not a replay
        when = datetime.now(UTC) + timedelta(seconds=nonce % 200)
        before = counts(db)
        response = zendesk_post(client, body, when=when)
        sent.append(response.status_code)
        fuzz.assert_refusal_is_clear(response)
        after = counts(db)
        if response.status_code != 200:
            assert after == before, response.text
            return
        status = response.json()["status"]
        added = after["zendesk_events"] - before["zendesk_events"]
        assert added == (0 if status == "duplicate" else 1), response.text
        assert after["jobs"] - before["jobs"] == (1 if status == "queued" else 0)

    fuzz.run(check, ZENDESK_EXAMPLES)
    assert len(sent) >= ZENDESK_EXAMPLES and {200, 400} <= set(sent)


forged_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Slack-Request-Timestamp": st.one_of(fuzz.hostile_text, st.integers().map(str)),
        "X-Slack-Signature": st.one_of(
            fuzz.hostile_text, st.just("v0=" + "0" * 64), st.binary(max_size=32).map(bytes.hex)
        ),
        "X-Zendesk-Webhook-Signature": st.one_of(fuzz.hostile_text, st.just("bm90IHNpZ25lZA==")),
        "X-Zendesk-Webhook-Signature-Timestamp": st.one_of(
            fuzz.hostile_text, st.just("2026-11-21T23:00:00Z"), st.integers().map(str)
        ),
    },
)


def _header_safe(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values go out as raw bytes (their UTF-8, control characters dropped), as a
    hostile client would send them; the server reads them as latin-1."""
    raw = {k: v.encode("utf-8", "surrogatepass") for k, v in headers.items()}
    return {k: bytes(b for b in v if b >= 32 and b != 127) for k, v in raw.items()}


def test_forged_and_missing_signatures_are_refused_and_store_nothing(client, db):
    before = counts(db)

    @given(
        st.sampled_from(["/slack/events", "/zendesk/webhook"]),
        fuzz.zendesk_bodies(),
        forged_headers,
    )
    def check(path, body, headers):
        headers = _header_safe({"Content-Type": "application/json"} | headers)
        response = client.post(path, content=body, headers=headers)
        # the size limit comes first; then no body gets past a missing or forged signature
        assert response.status_code in (401, 413), response.text
        fuzz.assert_refusal_is_clear(response)

    fuzz.run(check, FORGED_EXAMPLES)
    assert counts(db) == before


@pytest.mark.parametrize("age", [301, 3_600, -301, 10**12])
def test_replayed_slack_request_with_an_old_timestamp_is_refused(client, db, age):
    payload = fuzz.block_actions(fuzz.OUTSIDER, "aitl.prefer.A", fuzz.UNKNOWN_SET)
    body, content_type = fuzz.encode_slack("interactive", payload)
    response = slack_post(client, body, content_type, timestamp=int(time.time()) - age)
    assert response.status_code == 401, response.text
    assert "timestamp" in response.json()["error"].lower()


def test_the_same_signed_zendesk_delivery_twice_is_a_409(client, db):
    body = json.dumps(fuzz.zendesk_envelope()).encode()
    when = datetime.now(UTC)
    assert zendesk_post(client, body, when=when).json()["status"] == "queued"
    after_first = counts(db)
    replay = zendesk_post(client, body, when=when)
    assert replay.status_code == 409 and "already accepted" in replay.json()["reason"]
    old = zendesk_post(client, body, when=when - timedelta(hours=2))
    assert old.status_code == 401 and "away from now" in old.json()["reason"]
    assert counts(db) == after_first


content_types = st.one_of(
    st.sampled_from(
        [
            "",
            "text/plain",
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "APPLICATION/X-WWW-FORM-URLENCODED",
            "application/x-www-form-urlencoded;;;",
            "application/jsonx",
            "*/*",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


def test_wrong_content_types_are_refused_or_parsed_never_a_crash(client, db, slack):
    before = counts(db)

    @given(content_types, fuzz.slack_requests(f"{slack.base_url}/response/R0"), st.booleans())
    def check(content_type, request, to_zendesk):
        body, _ = request
        if to_zendesk:
            response = zendesk_post(client, body, **{"Content-Type": content_type})
        else:
            response = slack_post(client, body, content_type)
        fuzz.assert_refusal_is_clear(response)
        media = content_type.split(";")[0].strip().lower()
        allowed = ["application/json"] + ([] if to_zendesk else [fuzz.FORM])
        if media not in allowed:  # 413 first when the body is also over the limit
            assert response.status_code in (413, 415), response.text

    fuzz.run(check, TYPES_EXAMPLES)
    # a JSON body with a JSON type may be a valid webhook (stored once); clicks never are
    after = counts(db)
    assert after["feedback_events"] == before["feedback_events"] == 0
    assert after["jobs"] - before["jobs"] <= after["zendesk_events"] - before["zendesk_events"]


@pytest.fixture
def server(client, db):
    """The same app on a real socket: a client that streams and lies needs raw HTTP."""
    with serve_in_thread(client.app) as running:
        yield running


def raw_post(server, path: str, headers: dict[str, str], chunks: Iterator[bytes]) -> tuple:
    """Send headers, then body chunks until the server answers or hangs up; return
    (status, body text, bytes sent)."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # a small fixed send buffer: otherwise the kernel takes megabytes the server never
        # read (it grows the buffer up to tcp_wmem's max), and "sent" says nothing
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)
        sock.settimeout(10)
        sock.connect((server.host, server.port))
        sock.sendall(head.encode())
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: it stopped reading
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                break
        answer = _read_all(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode(), sent


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while part := sock.recv(65_536):
            data += part
    except OSError:
        pass
    return data


def endless(size: int = 1_024) -> Iterator[bytes]:
    """A body that never ends unless the server stops reading (capped at 20 MB)."""
    for _ in range(20_000):
        yield b"[" * size


@pytest.mark.parametrize("path", ["/slack/events", "/zendesk/webhook"])
@pytest.mark.parametrize(
    "length",
    [
        None,  # chunked: no length declared at all
        "10",  # a lie: far less than what follows
        "50000000",  # over the limit: refused before a byte is read
        "99999999999999999999",  # not even a number uvicorn accepts
    ],
)
def test_huge_streamed_bodies_stop_at_the_limit_before_parsing(server, db, path, length):
    before = counts(db)
    headers = {"Content-Type": "application/json"}
    if length is None:
        headers["Transfer-Encoding"] = "chunked"
        chunks = (f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in endless())
    else:
        headers["Content-Length"] = length
        chunks = endless()
    status, text, sent = raw_post(server, path, headers, chunks)
    assert sent < 2_000_000, text  # the server stopped reading long before the 20 MB end
    if length == "10":  # the server reads the 10 declared bytes, unsigned, and answers
        assert status == 401 and "missing" in text
    elif length == "99999999999999999999":  # uvicorn refuses it before the app
        assert status == 400
    else:
        assert status == 413 and "over" in text
    assert counts(db) == before


@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
def test_deeply_nested_json_is_a_400(client, db, depth):
    body = fuzz.deep_json(depth)
    zendesk = zendesk_post(client, body)
    assert zendesk.status_code in (400, 413), zendesk.text
    fuzz.assert_refusal_is_clear(zendesk)
    form = b"payload=" + body.replace(b"{", b"%7B").replace(b"}", b"%7D")
    for content, media in ((body, "application/json"), (form, fuzz.FORM)):
        slack = slack_post(client, content, media)
        assert slack.status_code in (400, 413), slack.text
        fuzz.assert_refusal_is_clear(slack)
    assert counts(db)["zendesk_events"] == 0 and counts(db)["feedback_events"] == 0


def test_url_verification_answers_the_challenge_and_health_ignores_input(client):
    body, media = fuzz.encode_slack("events", {"type": "url_verification", "challenge": "é\u202e"})
    response = slack_post(client, body, media)
    assert response.status_code == 200 and response.json()["challenge"] == "é\u202e"
    for query in ("", "?x=%00", "?" + "a" * 5_000):
        assert client.get(f"/healthz{query}").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert client.get("/slack/events").status_code == 405


def test_the_sandbox_page_refuses_hostile_acts_with_a_reason(slack):
    """Lower priority: the local Slack page's act and state endpoints (no app attached)."""
    from sandboxes.slack.server import create_app as sandbox_app

    acts = st.one_of(
        fuzz.json_values,
        fuzz.mutated(
            {"kind": "block_actions", "user": "U0ALICE", "channel": SUPPORT_CHANNEL, "ts": "1.2"}
        ),
        fuzz.mutated({"kind": "view_submission", "user": "U0ALICE", "view_id": "V0", "values": {}}),
        st.builds(lambda k: {"kind": k, "user": "U0ALICE"}, st.sampled_from(fuzz.SANDBOX_KINDS)),
    )
    with TestClient(sandbox_app(slack)) as page:
        before = len(slack.calls())

        @given(acts, st.one_of(fuzz.hostile_text, st.none()))
        def check(act, user):
            body = json.dumps(act).encode()
            response = page.post("/sandbox/act", content=body)
            assert response.status_code in (400, 404, 409), response.text
            assert len(response.json()["error"]) >= 8
            query = {"user": user.encode("utf-8", "surrogatepass")} if user is not None else {}
            state = page.get("/sandbox/state", params=query)
            assert state.status_code in (200, 404), state.text

        fuzz.run(check, SANDBOX_EXAMPLES)
        assert len(slack.calls()) == before
