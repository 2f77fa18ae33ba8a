"""Real recorded Zendesk API responses (tests/fixtures/zendesk, see tests/fixtures/SOURCES.md)
replayed through the real connector: the sandbox serves each recorded object as recorded,
Zenpy reads it over HTTP, and the ticket sync, the poller and the knowledge sync store it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aitl.core.queue import build_deferrer
from connectors import helpcenter, store
from connectors.services import ZendeskServices
from sandboxes.zendesk.state import InvalidParameter
from tests.support.zendesk import sandbox_settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "zendesk"
GO_ZENDESK = FIXTURES / "go-zendesk" / "fixture" / "GET"
ZENDESK_GO = FIXTURES / "zendesk-go" / "test_files" / "responses"
DOCS = FIXTURES / "developer-docs"


def recorded(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def services(kb_settings, kb_db, sandbox, tmp_path):
    settings = sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        zendesk_timeout_s=5,
        zendesk_backfill_days=20000,  # the recordings date from 2009 to 2019
        zendesk_sync_macros=True,
    )
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url))


def rows(db, sql, *args):
    with db.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_a_recorded_ticket_and_its_comments_with_an_attachment_sync(services, sandbox):
    sandbox.load_recorded("tickets", recorded(ZENDESK_GO / "support/tickets/show_200.json"))
    sandbox.load_recorded(
        "comments", recorded(ZENDESK_GO / "support/ticket_comments/list_200.json"), ticket_id=1000
    )

    result = services.ticket_sync.sync(1000, via="webhook")

    assert result.new_comments == 2
    # the recorded authors are neither the requester nor known users: nothing to draft from
    assert result.draft_request_id is None
    assert rows(
        services.db,
        "SELECT subject, description, status, priority, tags, brand_id, group_id,"
        " requester_id, via_channel, ticket_form_id, ticket_type FROM zendesk_tickets",
    ) == [
        (
            "Test Subject",
            "I need help.\nPlease!",
            "closed",
            "high",
            ["test_tag"],
            123,
            123,
            123,
            "web",
            123,
            None,
        )
    ]
    assert rows(
        services.db,
        "SELECT comment_id, public, body FROM zendesk_comments ORDER BY comment_id",
    ) == [(1274, True, "Please help!"), (1275, False, "Looking into an issue.")]
    assert rows(
        services.db,
        "SELECT attachment_id, comment_id, ticket_id, file_name, content_type, size_bytes, url"
        " FROM zendesk_attachments",
    ) == [
        (
            498483,
            1275,
            1000,
            "crash.log",
            "text/plain",
            2532,
            "https://company.zendesk.com/attachments/crash.log",
        )
    ]
    assert services.ticket_sync.sync(1000, via="poll").new_comments == 0  # idempotent


def test_recorded_tickets_and_an_export_page_sync_through_the_poller(services, sandbox):
    sandbox.load_recorded("tickets", recorded(GO_ZENDESK / "tickets.json"))
    export_page = recorded(DOCS / "incremental_tickets_cursor.json")
    sandbox.load_recorded("tickets", export_page)

    report = services.poller.poll()

    assert (report.tickets_seen, report.tickets_synced, report.pages) == (3, 3, 1)
    stored = rows(
        services.db,
        "SELECT ticket_id, subject, status, priority, tags, via_channel, ticket_form_id,"
        " ticket_type, brand_id FROM zendesk_tickets ORDER BY ticket_id",
    )
    assert stored == [
        (
            2,
            "Mail to create fixture ticket for testing",
            "solved",
            None,
            [],
            "email",
            360000389592,
            None,
            360002256672,
        ),
        (3, "にゃー", "solved", None, [], "web", 360000389592, None, 360002256672),
        (
            35436,
            "Help, my printer is on fire!",
            "open",
            "high",
            ["enterprise", "other_tag"],
            "web",
            None,
            "incident",
            None,
        ),
    ]
    description = rows(services.db, "SELECT description FROM zendesk_tickets WHERE ticket_id = 2")
    assert description == [("Mail to create fixture ticket for testing\n\nnukosuke (●ↀ ω ↀ●)",)]
    # the cursor saved is the page's own after_cursor, as Zendesk hands it out
    answer = httpx.get(
        f"{sandbox.url}/api/v2/incremental/tickets/cursor.json?start_time=0",
        auth=(f"{sandbox.agent_email}/token", sandbox.api_token),
    ).json()
    with services.db.connection() as conn:
        assert store.sync_state(conn, "tickets").cursor == answer["after_cursor"]
    assert [t["id"] for t in answer["tickets"]] == [2, 3, 35436]


def test_recorded_users_come_back_through_show_many_as_recorded(services, sandbox):
    loaded = sandbox.load_recorded("users", recorded(GO_ZENDESK / "users.json"))

    found = services.client.users([u["id"] for u in loaded] + [999])

    assert sorted(found) == [369531345753, 369537351454]
    customer = found[369531345753]
    assert (customer["name"], customer["email"], customer["role"], customer["locale"]) == (
        "Sample customer",
        "customer@example.com",
        "end-user",
        "en-US",
    )
    assert found[369537351454]["role"] == "admin"


def test_recorded_help_center_and_macro_sync_into_the_knowledge_base(services, sandbox):
    sandbox.load_recorded("categories", recorded(DOCS / "help_center_categories.json"))
    sandbox.load_recorded("sections", recorded(DOCS / "help_center_sections.json"))
    sandbox.load_recorded("user_segments", recorded(DOCS / "help_center_user_segments.json"))
    sandbox.load_recorded("permission_groups", recorded(DOCS / "guide_permission_groups.json"))
    (draft,) = sandbox.load_recorded(
        "articles", recorded(ZENDESK_GO / "guide/articles/show_200.json")
    )
    sandbox.load_recorded("macros", recorded(GO_ZENDESK / "macro.json"))
    # an author writes into the recorded section and into a new section of a recorded category
    avionics = sandbox.add_article(
        "Altimeter checks", "<p>Check the altimeter before every flight.</p>", section_id=35467
    )
    capes = sandbox.add_section("Capes", 37486578)
    cape = sandbox.add_article("Cape care", "<p>Wash capes cold.</p>", section_id=capes["id"])

    services.sync_kb()

    def documents(source):
        return {
            external_id: (title, body, url, metadata, audience)
            for external_id, title, body, url, metadata, audience in rows(
                services.db,
                "SELECT external_id, title, body, url, metadata, audience FROM kb_documents"
                " WHERE source = %s AND deleted_at IS NULL",
                source,
            )
        }

    articles = documents(helpcenter.ARTICLES)
    assert str(draft["id"]) not in articles  # recorded as a draft: never in the knowledge base
    assert articles[str(avionics["id"])][3]["section"] == "Avionics"
    assert articles[str(cape["id"])][3]["category"] == "Super Hero Tricks"
    macro = documents(helpcenter.MACROS)["360111062754"]
    assert macro[0] == "Close and redirect to topics"
    assert macro[1].startswith("Thanks for your request. This issue you reported is a known issue.")

    sandbox.update_article(draft["id"], draft=False)  # its author publishes it
    services.sync_kb()

    title, body, url, metadata, audience = documents(helpcenter.ARTICLES)["123"]
    assert (title, body) == ("Hello there... a story about awesome greetings.", "Hello there.")
    assert url == (
        "https://helpdesk.kaseya.com/hc/en-us/articles/123-hello-there-a-story-about-awesome-greetings"
    )
    # its segment (987) and permission group (123) are not in the account's listings: an
    # article that cannot be resolved is for agents only
    assert audience == "internal"
    assert "user segment 987" in metadata["visibility_problem"]
    assert "permission group 123" in metadata["visibility_problem"]
    assert metadata["section_id"] == 456

    # the recorded segments: a custom signed-in segment and a staff one are not the customers'
    sandbox.set_article_segment(avionics["id"], 9930)  # "Privileged users"
    sandbox.set_article_segment(cape["id"], 7284)  # "VIP agents", staff
    services.sync_kb()
    articles = documents(helpcenter.ARTICLES)
    assert articles[str(avionics["id"])][3]["user_segment_name"] == "Privileged users"
    assert articles[str(avionics["id"])][4] == "internal"
    assert articles[str(cape["id"])][3]["user_segment_type"] == "staff"
    assert articles[str(cape["id"])][4] == "internal"


def test_recorded_brands_segments_and_groups_are_served_as_recorded(services, sandbox):
    sandbox.load_recorded("brands", recorded(GO_ZENDESK / "brands.json"))
    sandbox.load_recorded("user_segments", recorded(DOCS / "help_center_user_segments.json"))
    sandbox.load_recorded("permission_groups", recorded(DOCS / "guide_permission_groups.json"))
    client = services.client

    brands = {b["id"]: b for b in client.brands()}
    segments = client.user_segments()
    groups = {g["id"]: g for g in client.permission_groups()}

    brand2, default = brands[360002143133], brands[360000021288]
    assert (brand2["subdomain"], brand2["has_help_center"]) == ("example-brand2", False)
    assert (default["name"], default["help_center_state"]) == ("サンドボックス", "restricted")
    assert (segments[7284]["name"], segments[7284]["user_type"]) == ("VIP agents", "staff")
    assert segments[9930]["organization_ids"] == [42]
    assert (groups[42]["name"], groups[42]["publish"], groups[75]["built_in"]) == (
        "Printer Experts",
        [123456],
        True,
    )

    # synced: the recorded brand with a (restricted) Help Center is read at its own host, the
    # one without a Help Center is not
    notes = services.sync_kb().help_center
    assert any("360000021288" in label for label in notes.brands)
    assert not any("360002143133" in label for label in notes.brands)
    assert notes.unreadable_brands == []


def test_a_malformed_recording_is_refused_and_loads_nothing(sandbox):
    before = sandbox.tickets()
    with pytest.raises(InvalidParameter, match="recorded tickets response"):
        sandbox.load_recorded("tickets", {"tickets": [{"subject": "no id"}]})
    with pytest.raises(InvalidParameter, match="recorded kind"):
        sandbox.load_recorded("widgets", {"widgets": []})
    with pytest.raises(InvalidParameter, match="ticket_id"):
        sandbox.load_recorded("comments", {"comments": [{"id": 1}]}, ticket_id=424242)
    assert sandbox.tickets() == before
