"""Help Center as real accounts hold it: who may read an article (user segments, permission
groups), one Help Center per brand, translations, and article drafts Guide accepts. Zenpy
against the Zendesk sandbox over HTTP, the real database and embedder."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner
from zenpy.lib.api_objects.help_centre_objects import Article

from aitl.app.cli import app as cli_app
from aitl.app.wiring import ZendeskHelpCenter
from aitl.core.queue import build_deferrer
from bot.exceptions import HelpCenterRefused
from connectors import exceptions, helpcenter, setup
from connectors.client import _translated
from connectors.services import ZendeskServices
from tests.support.zendesk import sandbox_settings

PUBLIC = "<p>Returns are free within 30 days of delivery.</p>"
AGENTS_ONLY = "<p>Internal: issue a goodwill credit of up to 20 euros without approval.</p>"


@pytest.fixture
def settings(kb_settings, sandbox, tmp_path):
    return sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        zendesk_page_size=2,  # several pages per listing
        zendesk_timeout_s=5,
    )


@pytest.fixture
def services(settings, kb_db):
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url))


def documents(db) -> dict[str, tuple]:
    """external_id → (title, audience, brand, locale, metadata) of the live articles."""
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT external_id, title, audience, brand, locale, metadata FROM kb_documents"
            " WHERE source = %s AND deleted_at IS NULL",
            (helpcenter.ARTICLES,),
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def cli(settings, *args: str) -> str:
    env = {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AITL_DATA_DIR": str(settings.data_dir),
        "AITL_ZENDESK_BASE_URL": settings.zendesk_base_url,
        "AITL_ZENDESK_EMAIL": settings.zendesk_email,
        "AITL_ZENDESK_API_TOKEN": settings.zendesk_api_token.get_secret_value(),
        "AITL_ZENDESK_CUSTOMER_SEGMENTS": json.dumps(settings.zendesk_customer_segments),
    }
    result = CliRunner().invoke(cli_app, ["zendesk", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


# --- who may read an article ------------------------------------------------------------------


def test_agent_only_article_is_internal_and_named_public_one_public(settings, services, sandbox):
    public = sandbox.add_article("Returns", PUBLIC)
    signed_in = sandbox.add_article(
        "Order history",
        "<p>See every order under My orders.</p>",
        user_segment_id=sandbox.signed_in_segment_id,
    )
    staff = sandbox.add_article(
        "Goodwill credit", AGENTS_ONLY, user_segment_id=sandbox.staff_segment_id
    )
    vip = sandbox.add_user_segment("VIP customers", "signed_in_users", tags=["vip"])
    for_vips = sandbox.add_article(
        "VIP hotline", "<p>Call the VIP line any time.</p>", user_segment_id=vip["id"]
    )

    reports = services.sync_kb()
    docs = documents(services.db)
    audience = {external_id: doc[1] for external_id, doc in docs.items()}
    assert audience == {
        str(public["id"]): "public",
        str(signed_in["id"]): "public",
        str(staff["id"]): "internal",
        str(for_vips["id"]): "internal",  # a custom segment is quoted only when named
    }
    meta = docs[str(staff["id"])][4]
    assert (meta["user_segment_id"], meta["user_segment_name"], meta["user_segment_type"]) == (
        sandbox.staff_segment_id,
        "Agents and managers",
        "staff",
    )
    assert (meta["permission_group_id"], meta["permission_group_name"]) == (
        sandbox.default_permission_group_id,
        "Admins",
    )
    assert meta["article_id"] == str(staff["id"]) and "visibility_problem" not in meta
    assert docs[str(public["id"])][4]["user_segment_name"] == "Everyone"
    assert reports.help_center.internal == 2 and reports.help_center.unresolved == []

    # the admin names the VIP segment as one customers may be quoted from
    named = settings.model_copy(
        update={"zendesk_customer_segments": ["everyone", "signed_in_users", "VIP customers"]}
    )
    again = ZendeskServices(named, services.db, build_deferrer(services.db.url)).sync_kb()
    assert again[helpcenter.ARTICLES].relabelled == 1  # in place: nothing re-embedded
    assert documents(services.db)[str(for_vips["id"])][1] == "public"
    assert "1 internal article (agents only" in cli(named, "sync-kb")


def test_unresolvable_segment_or_group_is_internal_and_reported(settings, services, sandbox):
    segment = sandbox.add_user_segment("Partners", "signed_in_users")
    group = sandbox.add_permission_group("Contractors")
    lost_segment = sandbox.add_article("Partner pricing", PUBLIC, user_segment_id=segment["id"])
    lost_group = sandbox.add_article("Shipping", PUBLIC, permission_group_id=group["id"])
    fine = sandbox.add_article("Gift wrapping", "<p>We gift wrap any order for 4 euros.</p>")
    sandbox.delete_user_segment(segment["id"])
    sandbox.delete_permission_group(group["id"])

    notes = services.sync_kb().help_center
    docs = documents(services.db)
    assert docs[str(lost_segment["id"])][1] == "internal"
    assert docs[str(lost_group["id"])][1] == "internal"
    assert docs[str(fine["id"])][1] == "public"
    problem = docs[str(lost_segment["id"])][4]["visibility_problem"]
    assert problem == f"user segment {segment['id']} not found"
    assert len(notes.unresolved) == 2 and notes.internal == 2
    assert any(
        f"article {lost_group['id']} 'Shipping'" in line
        and f"permission group {group['id']} not found" in line
        for line in notes.unresolved
    )
    out = cli(settings, "sync-kb")
    assert "2 internal articles" in out
    assert f"user segment {segment['id']} not found; treated as internal" in out


def test_a_segment_change_is_picked_up_by_the_next_sync(services, sandbox):
    article = sandbox.add_article("Returns", PUBLIC)
    assert services.sync_kb()[helpcenter.ARTICLES].added == 1
    assert documents(services.db)[str(article["id"])][1] == "public"

    chunks_before = live_chunk_ids(services.db)

    sandbox.set_article_segment(article["id"], sandbox.staff_segment_id)  # turned agent-only
    report = services.sync_kb()[helpcenter.ARTICLES]
    # relabelled in place: same text, so the same chunks and vectors, nothing re-embedded
    assert (report.relabelled, report.updated, report.deleted, report.chunks) == (1, 0, 0, 0)
    assert live_chunk_ids(services.db) == chunks_before
    _, audience, *_, meta = documents(services.db)[str(article["id"])]
    assert audience == "internal" and meta["user_segment_name"] == "Agents and managers"

    sandbox.set_article_segment(article["id"], None)  # back to everyone
    assert services.sync_kb()[helpcenter.ARTICLES].relabelled == 1
    assert documents(services.db)[str(article["id"])][1] == "public"
    assert services.sync_kb()[helpcenter.ARTICLES].relabelled == 0  # nothing left to change


def live_chunk_ids(db) -> set[int]:
    with db.connection() as conn:
        rows = conn.execute("SELECT id FROM kb_chunks WHERE retired_at IS NULL").fetchall()
    return {r[0] for r in rows}


# --- brands and locales -----------------------------------------------------------------------


def test_each_brand_has_its_own_help_center_and_translations_their_locale(services, sandbox):
    home = sandbox.add_article("Returns", PUBLIC)
    sandbox.add_translation(home["id"], "fr", "Retours", "<p>Retours gratuits sous 30 jours.</p>")
    acme = sandbox.add_brand("Acme", "acme")
    acme_article = sandbox.add_article(
        "Acme warranty",
        "<p>Acme tools carry a lifetime warranty.</p>",
        section_id=sandbox.add_brand_help_center(acme["id"]),
    )
    sandbox.add_brand("No Guide", "noguide", has_help_center=False)

    notes = services.sync_kb().help_center
    docs = documents(services.db)
    default_brand = str(sandbox.default_brand_id)
    acme_id = f"{acme['id']}:{acme_article['id']}:en-us"
    assert {k: (v[0], v[2], v[3]) for k, v in docs.items()} == {
        str(home["id"]): ("Returns", default_brand, "en-us"),  # the id it had before brands
        f"{home['id']}:fr": ("Retours", default_brand, "fr"),
        acme_id: ("Acme warranty", str(acme["id"]), "en-us"),
    }
    assert docs[f"{home['id']}:fr"][4]["article_id"] == str(home["id"])  # shared translations
    assert len(notes.brands) == 2 and notes.unreadable_brands == []
    # each Help Center was read at its brand's host: the sandbox answered with that host
    hits = services.drafter.pipeline().retriever.search("lifetime warranty on tools", 3)
    assert hits[0].title == "Acme warranty" and "//acme." in (hits[0].url or "")


def test_a_brand_closed_to_the_token_is_reported_by_status_and_the_rest_syncs(
    settings, services, sandbox
):
    acme, globex = sandbox.add_brand("Acme", "acme"), sandbox.add_brand("Globex", "globex")
    sandbox.add_article(
        "Acme warranty", PUBLIC, section_id=sandbox.add_brand_help_center(acme["id"])
    )
    globex_section = sandbox.add_brand_help_center(globex["id"])
    kept = sandbox.add_article("Globex returns", PUBLIC, section_id=globex_section)
    services.sync_kb()
    assert len(documents(services.db)) == 2

    sandbox.forbid_help_center(globex["id"])  # the token's agent is kept out of Globex
    sandbox.add_article("Repairs", "<p>Repairs take a week.</p>")  # the default brand's
    reports = services.sync_kb()
    assert reports[helpcenter.ARTICLES].deleted == 0  # Globex's articles are kept
    titles = {doc[0] for doc in documents(services.db).values()}
    assert titles == {"Acme warranty", "Globex returns", "Repairs"}
    [unreadable] = reports.help_center.unreadable_brands
    assert "Globex" in unreadable and "403" in unreadable
    status = setup.status(services)
    assert status["help_center.last_success"] is not None
    assert "Globex" in (status["help_center.last_error"] or "")
    assert "Globex" in cli(settings, "status")
    assert f"{globex['id']}:{kept['id']}:en-us" in documents(services.db)

    sandbox.forbid_help_center(globex["id"], False)
    services.sync_kb()
    assert setup.status(services)["help_center.last_error"] is None


def test_without_a_brands_listing_the_one_help_center_syncs_as_before(services, sandbox):
    article = sandbox.add_article("Returns", PUBLIC)
    sandbox.fail("GET", r"/brands", status=403, retry_after=None)
    services.sync_kb()
    [(external_id, doc)] = documents(services.db).items()
    assert external_id == str(article["id"]) and doc[2] is None  # brand: every brand's


# --- article drafts Guide accepts -------------------------------------------------------------


def test_draft_article_sends_permission_group_and_agents_only_segment(services, sandbox):
    article_id, url = services.draft_article("Pairing a second hub", "<p>Hold the button.</p>")
    [post] = [r for r in sandbox.requests if r.method == "POST" and "/articles" in r.path]
    sent = post.body["article"]
    assert post.status == 201 and sent["draft"] is True
    assert sent["permission_group_id"] == sandbox.default_permission_group_id
    assert sent["user_segment_id"] == sandbox.staff_segment_id  # never public by accident
    stored = sandbox.article(article_id)
    assert (stored["permission_group_id"], stored["user_segment_id"], stored["draft"]) == (
        sandbox.default_permission_group_id,
        sandbox.staff_segment_id,
        True,
    )
    assert url.endswith(f"/articles/{article_id}-pairing-a-second-hub")


def test_guide_refuses_an_article_without_permission_group_with_its_own_words(services, sandbox):
    # what the connector sent before: no permission group, no user segment
    section = sandbox.default_section_id
    old_call = _translated(
        lambda: services.client.zenpy.help_center.articles.create(
            section=section, article=Article(title="Old", body="<p>x</p>", draft=True)
        )
    )
    with pytest.raises(exceptions.ZendeskRefused) as refused:
        old_call()
    assert "400" in str(refused.value)
    assert "You must provide permission_group_id" in str(refused.value)

    answer = httpx.post(
        f"{sandbox.url}/api/v2/help_center/sections/{section}/articles.json",
        json={"article": {"title": "Raw", "body": "<p>x</p>", "user_segment_id": None}},
        auth=(f"{sandbox.agent_email}/token", sandbox.api_token),
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "title": "Invalid attribute",
            "message": "You passed an invalid value for the permission_group_id attribute."
            " You must provide permission_group_id.",
        }
    }
    assert not [a for a in sandbox.articles() if a["title"] in ("Old", "Raw")]


def test_a_refused_draft_shows_zendesk_reason_to_the_admin(settings, kb_db, sandbox):
    unknown = settings.model_copy(update={"zendesk_drafts_permission_group_id": 999})
    services = ZendeskServices(unknown, kb_db, build_deferrer(kb_db.url))
    with pytest.raises(exceptions.ZendeskNotFound) as refused:
        services.draft_article("Pairing a second hub", "<p>Hold the button.</p>")
    said = str(refused.value)
    assert "permission group 999" in said and "RecordNotFound" in said
    # the bot's port turns it into what the digest tells the admin, word for word
    with pytest.raises(HelpCenterRefused, match="RecordNotFound") as shown:
        ZendeskHelpCenter(services).draft_article("Pairing a second hub", "<p>Hold it.</p>")
    assert "permission group 999" in str(shown.value)
    assert not [a for a in sandbox.articles() if a["draft"]]
