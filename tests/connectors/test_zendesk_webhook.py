"""POST /zendesk/webhook against the real app and database: signatures, replays, bad bodies,
duplicates, and exactly one queued job per Zendesk event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from aitl.app.web import create_app
from connectors import signature
from tests.conftest import make_settings
from tests.support.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "zendesk" / "zendesk-go"
SECRET = "whsec-test-secret"


@pytest.fixture
def client(database_url, tmp_path, db):
    settings = make_settings(
        database_url, tmp_path, zendesk_webhook_secret=SECRET, zendesk_webhook_max_bytes=4_096
    )
    with TestClient(create_app(settings, database=db)) as test_client:
        yield test_client


def envelope(ticket_id: int = 42, kind: str = "ticket.created", event_id: str | None = None):
    return {
        "type": f"zen:event-type:{kind}",
        "account_id": 1,
        "id": event_id or str(uuid.uuid4()),
        "subject": f"zen:ticket:{ticket_id}",
        "time": "2026-11-21T23:00:00Z",
        "zendesk_event_version": "2022-11-06",
        "detail": {"id": str(ticket_id), "subject": "Help", "status": "NEW"},
        "event": {},
    }


def post(
    client,
    payload,
    *,
    secret=SECRET,
    when=None,
    content_type="application/json",
    raw: bytes | None = None,
    sig: str | None = None,
):
    body = raw if raw is not None else json.dumps(payload).encode()
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": content_type,
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": sig or signature.sign(secret, stamp, body),
    }
    return client.post("/zendesk/webhook", content=body, headers=headers)


def stored(db):
    with db.connection() as conn:
        events = conn.execute("SELECT event_id, duplicates, job_id FROM zendesk_events").fetchall()
        jobs = conn.execute("SELECT task_name, args FROM procrastinate_jobs ORDER BY id").fetchall()
    return events, jobs


def test_signing_matches_zendesks_published_vector():
    vector = json.loads((FIXTURES / "SIGNATURE_TEST_VECTOR.json").read_text())
    body = (FIXTURES / vector["body_file"]).read_bytes()
    headers = vector["headers"]
    assert (
        signature.sign(
            vector["signing_secret"], headers["X-Zendesk-Webhook-Signature-Timestamp"], body
        )
        == headers["X-Zendesk-Webhook-Signature"]
    )
    signature.verify(
        [vector["signing_secret"]],
        signature=headers["X-Zendesk-Webhook-Signature"],
        timestamp="1234",
        body=body,
        now=datetime.fromtimestamp(1234, UTC),
        tolerance_s=300,
    )


def test_new_ticket_event_is_recorded_with_one_queued_job(client, db):
    payload = envelope(ticket_id=42)
    response = post(client, payload)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "queued", "event_id": payload["id"]}
    events, jobs = stored(db)
    assert events == [(payload["id"], 0, events[0][2])] and events[0][2] is not None
    assert jobs == [("connectors:process_event", {"event_id": payload["id"]})]


def test_redelivery_of_the_same_event_queues_nothing_more(client, db):
    payload = envelope()
    assert post(client, payload).json()["status"] == "queued"
    again = post(client, payload, when=datetime.now(UTC) + timedelta(seconds=1))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    events, jobs = stored(db)
    assert events[0][1] == 1 and len(jobs) == 1


def test_byte_identical_replay_is_refused(client, db):
    payload = envelope()
    when = datetime.now(UTC)
    assert post(client, payload, when=when).status_code == 200
    replay = post(client, payload, when=when)
    assert replay.status_code == 409 and "already accepted" in replay.json()["reason"]
    events, _ = stored(db)
    assert events[0][1] == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"secret": "wrong"}, 401, "does not match"),
        ({"sig": "bm90IGEgc2lnbmF0dXJl"}, 401, "does not match"),
        ({"offset": timedelta(minutes=-6)}, 401, "away from now"),
        ({"offset": timedelta(minutes=6)}, 401, "away from now"),
        ({"content_type": "text/plain"}, 415, "application/json"),
        ({"raw": b"{not json"}, 400, "not valid JSON"),
        ({"raw": b"[1, 2]"}, 400, "JSON object"),
        ({"raw": b'{"hello": "world"}'}, 400, "not a Zendesk event"),
        (
            {
                "raw": json.dumps(
                    {
                        "type": "zen:event-type:ticket.created",
                        "id": "x",
                        "subject": "zen:ticket:abc",
                    }
                ).encode()
            },
            400,
            "not a number",
        ),
        ({"raw": b'{"a":' * 40 + b"1" + b"}" * 40}, 400, "nested deeper"),
        ({"raw": json.dumps({"x": "y" * 5000}).encode()}, 413, "over 4096"),
    ],
)
def test_bad_deliveries_get_a_reason_and_store_nothing(client, db, kwargs, status, reason):
    if "offset" in kwargs:
        kwargs = {"when": datetime.now(UTC) + kwargs["offset"]}
    response = post(client, envelope(), **kwargs)
    assert response.status_code == status, response.text
    assert reason in response.json()["reason"]
    assert stored(db) == ([], [])


def test_missing_signature_headers(client, db):
    response = client.post(
        "/zendesk/webhook", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401 and "missing" in response.json()["reason"]
    assert stored(db) == ([], [])


def test_trigger_template_body_is_accepted(client, db):
    body = {
        "aitl": 1,
        "ticket_id": "77",
        "updated_at": "2026-11-21 23:01:02 UTC",
        "event": "ticket.updated",
    }
    first, second = (
        post(client, body),
        post(client, body, when=datetime.now(UTC) + timedelta(seconds=1)),
    )
    assert first.json() == {"status": "queued", "event_id": "trigger:77:2026-11-21 23:01:02 UTC"}
    assert second.json()["status"] == "duplicate"
    assert len(stored(db)[1]) == 1


def test_other_event_types_are_kept_but_queue_nothing(client, db):
    vector = json.loads((FIXTURES / "SIGNATURE_TEST_VECTOR.json").read_text())
    payload = json.loads((FIXTURES / vector["body_file"]).read_text())
    response = post(client, payload)
    assert response.json()["status"] == "ignored"
    events, jobs = stored(db)
    assert len(events) == 1 and jobs == []


def test_concurrent_duplicates_yield_one_job(client, db):
    from concurrent.futures import ThreadPoolExecutor

    payload = envelope()
    base = datetime.now(UTC)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: post(client, payload, when=base + timedelta(seconds=i)).json()["status"],
                range(8),
            )
        )
    assert sorted(answers) == ["duplicate"] * 7 + ["queued"]
    events, jobs = stored(db)
    assert events[0][1] == 7 and len(jobs) == 1


def test_unconfigured_secret_is_a_clear_503(database_url, tmp_path, db):
    with TestClient(create_app(make_settings(database_url, tmp_path), database=db)) as client:
        response = post(client, envelope())
    assert response.status_code == 503 and "signing secret" in response.json()["reason"]
