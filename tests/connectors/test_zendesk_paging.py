"""Every page the connector reads is asked for at the configured size (AITL_ZENDESK_PAGE_SIZE):
each request the sandbox answered is read back from its log, not assumed from the client."""

from __future__ import annotations

import math

import httpx
import pytest

from aitl.core.queue import build_deferrer
from connectors import store
from connectors.services import ZendeskServices
from sandboxes.zendesk.server import ZendeskSandbox
from tests.conftest import make_settings

EXPORT = "/api/v2/incremental/tickets/cursor.json"


def services_at(database_url: str, data_dir, sandbox: ZendeskSandbox, db, page_size: int):
    settings = make_settings(
        database_url,
        data_dir,
        zendesk_base_url=sandbox.url,
        zendesk_email=sandbox.agent_email,
        zendesk_api_token=sandbox.api_token,
        zendesk_page_size=page_size,
        zendesk_timeout_s=5,
    )
    return ZendeskServices(settings, db, build_deferrer(db.url))


@pytest.fixture
def small_pages(database_url, tmp_path, sandbox, db):
    return services_at(database_url, tmp_path, sandbox, db, page_size=4)


def export_requests(sandbox: ZendeskSandbox) -> list:
    return [r for r in sandbox.requests if r.path == EXPORT]


def requests_to(sandbox: ZendeskSandbox, path: str) -> list:
    return [r for r in sandbox.requests if r.path == path]


def test_a_cursor_chain_of_small_pages_asks_for_the_size_on_every_page(small_pages, sandbox):
    ids = [
        sandbox.create_ticket(f"Question {n}", f"Hub {n} will not pair.", f"c{n}@example.com")["id"]
        for n in range(23)
    ]

    report = small_pages.poller.poll()

    pages = export_requests(sandbox)
    assert report.pages == len(pages) == math.ceil(23 / 4) == 6
    assert [r.params.get("per_page") for r in pages] == ["4"] * 6
    assert "start_time" in pages[0].params and "cursor" not in pages[0].params
    assert all("cursor" in r.params and "start_time" not in r.params for r in pages[1:])
    assert report.tickets_seen == report.tickets_synced == 23
    with small_pages.db.connection() as conn:
        stored = conn.execute("SELECT ticket_id FROM zendesk_tickets ORDER BY 1").fetchall()
        saved = store.sync_state(conn, "tickets")
    assert [row[0] for row in stored] == sorted(ids)  # each ticket once

    # the saved cursor is where the next poll starts: nothing is read twice, a newcomer once
    again = small_pages.poller.poll()
    assert again.tickets_seen == 0
    assert export_requests(sandbox)[-1].params == {"cursor": saved.cursor, "per_page": "4"}
    newcomer = sandbox.create_ticket("Later", "One more question.", "late@example.com")
    later = small_pages.poller.poll()
    assert later.tickets_seen == 1 and later.tickets_synced == 1
    last = export_requests(sandbox)[-1]
    assert last.params["per_page"] == "4" and last.params["cursor"] == saved.cursor
    with small_pages.db.connection() as conn:
        assert store.ticket(conn, newcomer["id"]).subject == "Later"


def test_help_center_and_macro_listings_ask_for_the_size_on_every_page(
    database_url, tmp_path, sandbox, db
):
    client = services_at(database_url, tmp_path, sandbox, db, page_size=3).client
    category = sandbox.add_category("Billing")
    for n in range(6):
        sandbox.add_section(f"Section {n}", category["id"])
    for n in range(7):
        sandbox.add_article(f"Article {n}", f"<p>Answer {n}.</p>")
        sandbox.add_macro(f"Macro {n}", f"Reply {n}.")
    for n in range(4):
        sandbox.add_category(f"Category {n}")

    listings = {
        "/api/v2/help_center/articles.json": lambda: list(client.articles()),
        "/api/v2/help_center/sections.json": lambda: list(client.sections().values()),
        "/api/v2/help_center/categories.json": lambda: list(client.categories().values()),
        "/api/v2/macros.json": client.macros,
        f"/api/v2/help_center/sections/{sandbox.default_section_id}/articles.json": (
            lambda: client.section_articles(sandbox.default_section_id)
        ),
    }
    for path, listing in listings.items():
        found = listing()
        ids = [item["id"] for item in found]
        assert len(ids) == len(set(ids)) >= 6, path  # every item once, across pages
        sent = requests_to(sandbox, path)
        assert len(sent) == math.ceil(len(ids) / 3), path
        assert [r.params.get("page[size]") for r in sent] == ["3"] * len(sent), path
        assert all("page[after]" in r.params for r in sent[1:]), path


def test_comments_and_users_are_read_in_pages_of_the_size(database_url, tmp_path, sandbox, db):
    client = services_at(database_url, tmp_path, sandbox, db, page_size=3).client
    ticket = sandbox.create_ticket("Paging", "first", "p@example.com")
    for n in range(6):
        sandbox.add_comment(ticket["id"], f"reply {n}", author="agent")
    users = [sandbox.ensure_user(f"u{n}@example.com")["id"] for n in range(7)]

    bodies = [c["body"] for c in client.comments(ticket["id"])]
    found = client.users(users)

    assert bodies == ["first"] + [f"reply {n}" for n in range(6)]
    comments = requests_to(sandbox, f"/api/v2/tickets/{ticket['id']}/comments.json")
    assert [r.params.get("page[size]") for r in comments] == ["3", "3", "3"]
    assert sorted(found) == sorted(users)
    batches = [
        r.params["ids"].split(",") for r in requests_to(sandbox, "/api/v2/users/show_many.json")
    ]
    assert [len(b) for b in batches] == [3, 3, 1]


def test_users_beyond_zendesks_100_ids_go_in_batches_of_100(database_url, tmp_path, sandbox, db):
    client = services_at(database_url, tmp_path, sandbox, db, page_size=1000).client
    users = [sandbox.ensure_user(f"many{n}@example.com")["id"] for n in range(230)]

    found = client.users(users)

    assert sorted(found) == sorted(users)
    batches = [r.params["ids"] for r in requests_to(sandbox, "/api/v2/users/show_many.json")]
    assert [len(b.split(",")) for b in batches] == [100, 100, 30]
    assert all(r.status == 200 for r in sandbox.requests)


# --- the sandbox answers as Zendesk does -----------------------------------------------------

AUTH = ("agent@sandbox.example/token", "sandbox-token")


def test_sandbox_export_gives_1000_without_per_page_and_caps_at_1000(sandbox):
    for n in range(1003):
        sandbox.create_ticket(f"T{n}", "body", f"bulk{n % 50}@example.com")
    url = f"{sandbox.url}{EXPORT}"

    default = httpx.get(url, params={"start_time": 0}, auth=AUTH).json()
    capped = httpx.get(url, params={"start_time": 0, "per_page": 5000}, auth=AUTH).json()
    small = httpx.get(url, params={"start_time": 0, "per_page": 4}, auth=AUTH).json()
    following = httpx.get(small["after_url"], auth=AUTH).json()
    rest = httpx.get(url, params={"cursor": default["after_cursor"]}, auth=AUTH).json()

    assert len(default["tickets"]) == 1000 and default["end_of_stream"] is False
    assert len(capped["tickets"]) == 1000
    assert len(small["tickets"]) == 4 and "per_page=4" in small["after_url"]
    assert [t["subject"] for t in following["tickets"]] == ["T4", "T5", "T6", "T7"]
    assert len(rest["tickets"]) == 3 and rest["end_of_stream"] is True


def test_sandbox_lists_honour_the_page_size_after_a_cursor_and_refuse_101_ids(sandbox):
    for n in range(5):
        sandbox.add_macro(f"Macro {n}", f"Reply {n}.")
    url = f"{sandbox.url}/api/v2/macros.json"

    cursor_pages, next_url = [], f"{url}?page[size]=2"
    while next_url:
        page = httpx.get(next_url, auth=AUTH).json()
        cursor_pages.append(len(page["macros"]))
        next_url = page["links"]["next"] if page["meta"]["has_more"] else None
    offset = httpx.get(url, params={"per_page": 2, "page": 2}, auth=AUTH).json()
    unpaged = httpx.get(url, auth=AUTH).json()
    too_big = httpx.get(url, params={"per_page": 101}, auth=AUTH)
    ids = ",".join(str(360000000001 + n) for n in range(101))
    too_many = httpx.get(f"{sandbox.url}/api/v2/users/show_many.json?ids={ids}", auth=AUTH)

    assert cursor_pages == [2, 2, 1]
    assert [m["title"] for m in offset["macros"]] == ["Macro 2", "Macro 3"]
    assert "per_page=2" in offset["next_page"]
    assert len(unpaged["macros"]) == 5 and unpaged["next_page"] is None  # default 100
    assert too_big.status_code == 400
    assert too_many.status_code == 400 and "at most 100" in too_many.json()["description"]
