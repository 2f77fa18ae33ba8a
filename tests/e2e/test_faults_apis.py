"""Faults of the remote APIs, injected by the local Slack and Zendesk sandboxes: rate limits
with Retry-After, 5xx before and after the call took effect, and answers slower than the
client waits. Whatever happens, a message or comment is made once and no ticket is skipped.
Then duplicate webhooks and clicks arriving at the same moment over real loopback HTTP: one
stored event, one queued job."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aitl.core.settings import Settings
from bot import slack_api
from bot.exceptions import SlackUnavailable
from connectors import exceptions, helpcenter, setup
from connectors import store as zendesk_store
from sandboxes.slack.server import SlackSandbox, serve
from sandboxes.slack.state import AGENT_ALICE, AGENT_BOB, BOT_TOKEN, SUPPORT_CHANNEL
from sandboxes.slack.state import encode_interactivity as interactivity
from tests.support.sandboxes import connected_settings, run_worker, ticket_thread

CUSTOMER = "jane.doe@example.com"
FORM = "application/x-www-form-urlencoded"


# --- the Slack client against the Slack sandbox (no database) -----------------------------


@pytest.fixture
def slack():
    box = SlackSandbox()
    with serve(box):
        yield box


def client_for(slack: SlackSandbox, tmp_path, **overrides) -> slack_api.SlackClient:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        slack_bot_token=BOT_TOKEN,
        slack_api_url=f"{slack.base_url}/api/",
        **overrides,
    )
    return slack_api.web_client(settings)


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def statuses(slack: SlackSandbox, method: str) -> list[int]:
    return [c.status for c in slack.calls(method)]


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("applied", [False, True], ids=["refused", "posted-then-failed"])
@pytest.mark.parametrize("in_thread", [False, True], ids=["channel", "thread"])
def test_a_server_error_is_retried_and_the_message_posted_once(
    slack, tmp_path, status, applied, in_thread
):
    client = client_for(slack, tmp_path)
    parent = client.chat_postMessage(channel=SUPPORT_CHANNEL, text="parent")["ts"]
    thread_ts = parent if in_thread else None
    slack.fail("chat.postMessage", status=status, after_apply=applied)

    answer = slack_api.call(
        client.chat_postMessage, channel=SUPPORT_CHANNEL, thread_ts=thread_ts, text="draft"
    )

    if in_thread:
        found = [m for m in slack.replies(SUPPORT_CHANNEL, parent) if m["text"] == "draft"]
    else:
        found = [m for m in slack.messages(SUPPORT_CHANNEL) if m["text"] == "draft"]
    assert len(found) == 1 and answer["ts"] == found[0]["ts"]
    # refused: posted by the retry; posted then failed: found by reading back, not re-posted
    expected = [200, status] if applied else [200, status, 200]
    assert statuses(slack, "chat.postMessage") == expected
    lookup = "conversations.replies" if in_thread else "conversations.history"
    assert len(slack.calls(lookup)) == 1, "read back before posting again"


def test_rate_limits_are_waited_out_as_retry_after_asks(slack, tmp_path):
    client = client_for(slack, tmp_path)
    slack.fail("chat.postMessage", status=429, retry_after=2)
    slack.fail("chat.update", status=429, retry_after=1)
    ts = slack_api.call(client.chat_postMessage, channel=SUPPORT_CHANNEL, text="v1")["ts"]
    slack_api.call(client.chat_update, channel=SUPPORT_CHANNEL, ts=ts, text="v2")

    assert [m["text"] for m in slack.messages(SUPPORT_CHANNEL)] == ["v2"]
    assert len(slack.edit_history(SUPPORT_CHANNEL, ts)) == 1, "updated once"
    for method, wait in (("chat.postMessage", 2), ("chat.update", 1)):
        limited, done = slack.calls(method)
        assert (limited.status, done.status) == (429, 200)
        assert done.time - limited.time >= wait, f"{method} retried before Retry-After"


def test_a_long_retry_after_is_left_to_the_job_queue(slack, tmp_path):
    client = client_for(slack, tmp_path, slack_retry_after_max_s=5)
    slack.fail("chat.postMessage", status=429, retry_after=120)
    with pytest.raises(SlackUnavailable, match="ratelimited"):
        slack_api.call(client.chat_postMessage, channel=SUPPORT_CHANNEL, text="later")
    assert statuses(slack, "chat.postMessage") == [429], "not waited for two minutes"
    assert slack.messages(SUPPORT_CHANNEL) == []


def test_retries_are_bounded_and_nothing_is_posted_while_slack_refuses(slack, tmp_path):
    client = client_for(slack, tmp_path, slack_retry_on_server_error=2)
    slack.fail("chat.postMessage", status=503, times=10)
    with pytest.raises(SlackUnavailable, match="service_unavailable"):
        slack_api.call(client.chat_postMessage, channel=SUPPORT_CHANNEL, text="x")
    assert statuses(slack, "chat.postMessage") == [503, 503, 503]
    assert slack.messages(SUPPORT_CHANNEL) == []


def test_a_post_slower_than_the_timeout_is_found_not_repeated(slack, tmp_path):
    client = client_for(slack, tmp_path, slack_timeout_s=1)
    slack.delay("chat.postMessage", seconds=2.5)  # Slack posts, the answer comes too late
    answer = slack_api.call(client.chat_postMessage, channel=SUPPORT_CHANNEL, text="slow")
    assert [m["ts"] for m in slack.messages(SUPPORT_CHANNEL)] == [answer["ts"]]
    assert wait_for(lambda: slack.calls("chat.postMessage")), "the slow answer is logged at last"
    assert len(slack.calls("chat.postMessage")) == 1

    slack.delay("chat.update", seconds=2.5, after_apply=False)  # a slow update is repeated
    slack_api.call(client.chat_update, channel=SUPPORT_CHANNEL, ts=answer["ts"], text="v2")
    assert slack.message(SUPPORT_CHANNEL, answer["ts"])["text"] == "v2"


def test_when_slack_cannot_be_read_back_the_job_retry_finds_the_post(slack, tmp_path):
    client = client_for(slack, tmp_path)
    slack.fail("chat.postMessage", status=500, after_apply=True)
    slack.fail("conversations.history", status=500, times=3)
    with pytest.raises(SlackUnavailable):  # posted, but unconfirmed: not posted blindly again
        slack_api.post_once(
            client, "digest:w1:C1", check_first=False, channel=SUPPORT_CHANNEL, text="d"
        )
    assert len(slack.messages(SUPPORT_CHANNEL)) == 1

    again = slack_api.post_once(
        client, "digest:w1:C1", check_first=True, channel=SUPPORT_CHANNEL, text="d"
    )
    assert [m["ts"] for m in slack.messages(SUPPORT_CHANNEL)] == [again["ts"]]
    assert statuses(slack, "chat.postMessage") == [500]


# --- the product end to end: Zendesk ticket → worker → Slack thread → clicks ----------------


@pytest.fixture
def settings(kb_settings, slack, zendesk, tmp_path):
    return connected_settings(
        kb_settings,
        slack,
        zendesk,
        tmp_path,
        slack_manager_ids=[AGENT_ALICE],
        slack_digest_channel=SUPPORT_CHANNEL,
        zendesk_page_size=2,
    )


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def retry_due_jobs(db) -> None:
    """Make jobs waiting for their retry due now, as time passing would."""
    with db.connection() as conn:
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")


def post_signed(slack: SlackSandbox, web, body: bytes, **headers) -> httpx.Response:
    signed = slack.signed_headers(body) | {"Content-Type": FORM} | headers
    return httpx.post(f"{web.url}/slack/events", content=body, headers=signed, timeout=10)


def test_a_ticket_thread_and_its_card_survive_rate_limits_and_server_errors(
    services, slack, zendesk, web, kb_db
):
    slack.fail("chat.postMessage", status=429, retry_after=1)  # the parent: rate limited,
    slack.fail("chat.postMessage", status=500, after_apply=True)  # then posted but 500
    slack.fail("chat.postMessage", status=502)  # the card: refused once
    ticket, parent, card = ticket_thread(
        services, zendesk, slack, web, "Hub offline", "My Lumen hub drops off the wifi nightly."
    )
    assert statuses(slack, "chat.postMessage") == [429, 500, 502, 200]
    tops = [m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket['id']}" in m["text"]]
    assert [m["ts"] for m in tops] == [parent["ts"]]
    stored = rows(kb_db, "SELECT parent_ts, card_ts FROM slack_cards")
    assert stored == [(parent["ts"], card["ts"])]

    slack.fail("chat.update", status=503)
    slack.fail("chat.update", status=429, retry_after=1)
    payload = slack.block_actions(AGENT_BOB, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.tie")
    assert post_signed(slack, web, interactivity(payload)).status_code == 200
    run_worker(services)
    assert statuses(slack, "chat.update") == [503, 429, 200]
    shown = slack.message(SUPPORT_CHANNEL, card["ts"])
    assert f"<@{AGENT_BOB}>: tie" in str(shown["blocks"])
    assert len(slack.edit_history(SUPPORT_CHANNEL, card["ts"])) == 1


def test_a_digest_posted_before_slack_failed_is_not_sent_again(services, slack, kb_db):
    digest = services.slack.digest
    window = digest.window(datetime.now(UTC).date())
    slack.fail("chat.postMessage", status=500, after_apply=True)  # the manager's DM
    slack.fail("conversations.history", status=503, times=10)  # and it cannot be read back
    with pytest.raises(SlackUnavailable):
        digest.send(window)
    slack.clear_faults()  # Slack recovers; the job retries
    report = digest.send(window)

    assert report.sent == [AGENT_ALICE] and report.already == [SUPPORT_CHANNEL]
    posted = rows(kb_db, "SELECT recipient, channel, message_ts FROM digest_deliveries")
    assert len(posted) == 2
    for recipient, channel, message_ts in posted:
        summaries = [m["ts"] for m in slack.messages(channel) if is_digest(m)]
        assert summaries == [message_ts], f"{recipient} got the digest once"


def is_digest(message) -> bool:
    """A digest summary (the chart arrives as its own file message): known by its key."""
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    return str(payload.get("key", "")).startswith("digest:")


# --- Zendesk: the poll, write-back and Help Center through Zenpy ---------------------------


def tickets(zendesk, n: int) -> list[dict]:
    return [
        zendesk.create_ticket(f"Order {i}", f"Where is my order number {i}?", CUSTOMER)
        for i in range(n)
    ]


def draft_requests(db) -> list[int]:
    found = rows(db, "SELECT ticket_id FROM zendesk_draft_requests ORDER BY ticket_id")
    return [r[0] for r in found]


def parents(slack: SlackSandbox, ticket_id: int) -> list[dict]:
    return [m for m in slack.messages(SUPPORT_CHANNEL) if f"#{ticket_id}" in m["text"]]


def test_the_poll_rides_out_rate_limits_timeouts_and_5xx_and_every_ticket_is_drafted(
    services, zendesk, slack, kb_db
):
    made = tickets(zendesk, 3)  # two pages of two
    zendesk.fail("GET", r"incremental/tickets", status=429, retry_after=1)
    zendesk.delay("GET", rf"tickets/{made[1]['id']}/comments", seconds=3)  # timeout is 2 s
    zendesk.fail("GET", rf"tickets/{made[2]['id']}/comments", status=503, retry_after=None)
    zendesk.fail("GET", r"users/show_many", status=500, retry_after=None)

    report = services.zendesk.poller.poll()

    assert (report.pages, report.tickets_synced) == (2, 3)
    assert draft_requests(kb_db) == sorted(t["id"] for t in made)
    by_status = [r.status for r in zendesk.requests if r.status != 200]
    assert sorted(by_status) == [429, 500, 503], "each fault was met, and retried"
    run_worker(services)
    assert [len(parents(slack, t["id"])) for t in made] == [1, 1, 1]


def test_a_poll_that_fails_past_its_retries_keeps_its_cursor_and_the_next_skips_nothing(
    services, zendesk, kb_db
):
    made = tickets(zendesk, 3)
    zendesk.fail("GET", rf"tickets/{made[2]['id']}/comments", status=503, times=4, retry_after=None)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.zendesk.poller.poll()
    with kb_db.connection() as conn:
        state = zendesk_store.sync_state(conn, "tickets")
    assert state is not None and "503" in (state.last_error or "")
    assert draft_requests(kb_db) == [made[0]["id"], made[1]["id"]], "page 2 was not passed"

    report = services.zendesk.poller.poll()  # Zendesk is back
    assert report.tickets_synced == 1, "only the page that failed is read again"
    assert draft_requests(kb_db) == sorted(t["id"] for t in made), "one draft request each"


def test_a_write_back_lands_once_through_a_rate_limit_and_a_500_after_writing(
    services, zendesk, kb_db
):
    ticket = zendesk.create_ticket("Refund", "Where is my refund?", CUSTOMER)
    path = rf"tickets/{ticket['id']}\.json"
    zendesk.fail("PUT", path, status=429, retry_after=1)
    zendesk.fail("PUT", path, status=500, retry_after=None, after_apply=True)
    services.zendesk.writeback.request(
        key="adopt-1", ticket_id=ticket["id"], body="Your refund is on its way."
    )
    run_worker(services)  # 429 waited out in the call; the 500 fails the job
    assert rows(kb_db, "SELECT status, attempts FROM zendesk_writebacks") == [("pending", 1)]
    retry_due_jobs(kb_db)
    run_worker(services)  # the retry finds the comment Zendesk made before its 500

    notes = [c for c in zendesk.comments(ticket["id"]) if "refund is on its way" in c["body"]]
    assert len(notes) == 1
    assert rows(kb_db, "SELECT status, comment_id FROM zendesk_writebacks") == [
        ("posted", notes[0]["id"])
    ]
    assert [r.status for r in zendesk.requests if r.method == "PUT"] == [429, 500]


def live_articles(db) -> set[str]:
    found = rows(
        db,
        "SELECT title FROM kb_documents WHERE source = %s AND deleted_at IS NULL",
        helpcenter.ARTICLES,
    )
    return {r[0] for r in found}


def test_help_center_sync_retries_and_a_failed_listing_deletes_nothing(services, zendesk, kb_db):
    zendesk.add_article("Gift wrapping", "<p>We gift wrap any order for 4 euros.</p>")
    zendesk.add_article("Returns", "<p>Returns are free within 30 days of delivery.</p>")
    zendesk.fail("GET", r"help_center/.*articles", status=429, retry_after=1)
    zendesk.delay("GET", r"help_center/.*sections", seconds=3)
    zendesk.fail("GET", r"help_center/.*categories", status=502, retry_after=None)
    services.zendesk.sync_kb()
    synced = live_articles(kb_db)
    assert {"Gift wrapping", "Returns"} <= synced

    zendesk.fail("GET", r"help_center/.*articles", status=503, times=4, retry_after=None)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.zendesk.sync_kb()
    assert live_articles(kb_db) == synced, "a listing cut short prunes nothing"


def test_a_help_center_draft_created_before_a_500_is_not_created_twice(services, zendesk):
    zendesk.fail("POST", r"sections/\d+/articles", status=500, retry_after=None, after_apply=True)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.zendesk.draft_article("Pairing a second hub", "<p>Hold the button.</p>")
    zendesk.fail("POST", r"sections/\d+/articles", status=429, retry_after=1)
    article_id, _ = services.zendesk.draft_article("Pairing a second hub", "<p>Hold it.</p>")
    drafts = [a for a in zendesk.articles() if a["title"] == "Pairing a second hub"]
    assert [(a["id"], a["draft"]) for a in drafts] == [(article_id, True)]


# --- duplicates arriving together, over loopback HTTP --------------------------------------


def all_at_once(requests: list) -> list[httpx.Response]:
    """Send every request from its own thread, released together."""
    start = threading.Barrier(len(requests))

    def send(request) -> httpx.Response:
        url, body, headers = request
        start.wait()
        return httpx.post(url, content=body, headers=headers, timeout=20)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_duplicate_webhooks_arriving_together_make_one_event_one_job_one_thread(
    services, zendesk, slack, web, kb_db
):
    setup.connect(
        services.zendesk,
        email=zendesk.agent_email,
        api_token=zendesk.api_token,
        public_url=web.url,
    )
    ticket = zendesk.create_ticket("Hub offline", "The hub drops off the wifi.", CUSTOMER)
    (event_id,) = {d.event_id for d in zendesk.outbox.deliveries}
    now = datetime.now(UTC)
    # pairs of byte-identical copies (a replay) signed at four different seconds (redeliveries)
    copies = [zendesk.signed_copy(event_id, now - timedelta(seconds=i // 2)) for i in range(8)]

    answers = all_at_once(copies)

    assert sorted(a.status_code for a in answers) == [200] * 4 + [409] * 4
    accepted = sorted(a.json()["status"] for a in answers if a.status_code == 200)
    assert accepted == ["duplicate"] * 3 + ["queued"]
    assert rows(kb_db, "SELECT duplicates FROM zendesk_events") == [(3,)]
    jobs = rows(
        kb_db, "SELECT 1 FROM procrastinate_jobs WHERE task_name = 'connectors:process_event'"
    )
    assert len(jobs) == 1
    run_worker(services)
    assert len(parents(slack, ticket["id"])) == 1


def test_the_same_click_arriving_together_is_one_event_and_one_refresh(
    services, zendesk, slack, web, kb_db
):
    _, _, card = ticket_thread(
        services, zendesk, slack, web, "Hub offline", "My Lumen hub drops off the wifi nightly."
    )
    payload = slack.block_actions(AGENT_BOB, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.A")
    body = interactivity(payload)
    stamp = int(time.time())
    # Slack's retries are signed afresh; a copy relayed twice carries the same signature
    copies = [
        (
            f"{web.url}/slack/events",
            body,
            slack.signed_headers(body, stamp - i // 2)
            | ({"X-Slack-Retry-Num": str(i), "X-Slack-Retry-Reason": "timeout"} if i else {}),
        )
        for i in range(8)
    ]
    other = slack.block_actions(AGENT_ALICE, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.B")
    other_body = interactivity(other)
    copies.append((f"{web.url}/slack/events", other_body, slack.signed_headers(other_body)))

    answers = all_at_once(copies)

    assert [a.status_code for a in answers] == [200] * 9
    stored = rows(kb_db, "SELECT agent_id, value FROM feedback_events ORDER BY agent_id")
    assert stored == [(AGENT_ALICE, "B"), (AGENT_BOB, "A")], "one event per click, none lost"
    refreshes = rows(
        kb_db, "SELECT status FROM procrastinate_jobs WHERE task_name = 'bot:refresh_card'"
    )
    assert len(refreshes) == 1, "clicks share one waiting refresh of the card"
    run_worker(services)
    shown = str(slack.message(SUPPORT_CHANNEL, card["ts"])["blocks"])
    assert f"<@{AGENT_BOB}>: A is better" in shown and f"<@{AGENT_ALICE}>: B is better" in shown


def test_changes_of_mind_arriving_together_form_one_chain(services, zendesk, slack, web, kb_db):
    _, _, card = ticket_thread(
        services, zendesk, slack, web, "Hub offline", "My Lumen hub drops off the wifi nightly."
    )
    first = interactivity(
        slack.block_actions(AGENT_BOB, SUPPORT_CHANNEL, card["ts"], "aitl.prefer.A")
    )
    assert post_signed(slack, web, first).status_code == 200
    changes = []
    for action in ("aitl.prefer.B", "aitl.prefer.tie", "aitl.prefer.both_bad"):
        change = interactivity(slack.block_actions(AGENT_BOB, SUPPORT_CHANNEL, card["ts"], action))
        changes.append((f"{web.url}/slack/events", change, slack.signed_headers(change)))

    assert [a.status_code for a in all_at_once(changes)] == [200] * 3

    chain = rows(kb_db, "SELECT id, value, supersedes FROM feedback_events ORDER BY id")
    assert sorted(c[1] for c in chain) == ["A", "B", "both_bad", "tie"], "every answer kept"
    assert [c[2] for c in chain] == [None, *(c[0] for c in chain[:-1])], "one chain, no fork"
