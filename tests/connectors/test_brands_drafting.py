"""Two brands, two Help Centers: each brand's tickets are drafted from its own knowledge,
end to end (the sandbox's brands over HTTP, Zenpy, the Help Center sync, the poller, the
worker and the real pipeline on the real database)."""

from __future__ import annotations

from aitl.core.queue import build_deferrer
from connectors import helpcenter
from connectors.services import ZendeskServices
from tests.support.zendesk import run_worker, sandbox_settings

ACME_RETURNS = (
    "<p>Acme accepts returns of any blender within 60 days of delivery.</p>"
    "<p>Print the prepaid Acme return label from your Acme account and drop the parcel at"
    " any post office.</p>"
)
GLOBEX_RETURNS = (
    "<p>Globex accepts returns of any blender within 14 days of delivery.</p>"
    "<p>Ship the blender to the Globex warehouse in Springfield; return postage is paid by"
    " the customer.</p>"
)
QUESTION = "I want to return the blender I bought. How many days do I have and how do I ship it?"


def settings_for(kb_settings, sandbox, tmp_path, **overrides):
    return sandbox_settings(kb_settings, sandbox, tmp_path, zendesk_timeout_s=5, **overrides)


def two_brands(sandbox) -> dict[str, int]:
    brands = {}
    for name, body in (("Acme", ACME_RETURNS), ("Globex", GLOBEX_RETURNS)):
        brand = sandbox.add_brand(name, name.lower())
        section = sandbox.add_brand_help_center(brand["id"])
        sandbox.add_article("Returning a blender", body, section_id=section)
        brands[name] = brand["id"]
    return brands


def drafted(db) -> dict[int, tuple[set[str | None], list[str]]]:
    """ticket id → (brands of every chunk retrieved for its drafts, its drafts' texts)."""
    with db.connection() as conn:
        sets = conn.execute(
            "SELECT r.ticket_id, s.id, s.retrieved FROM zendesk_draft_requests r"
            " JOIN rag_draft_sets s ON s.id = r.draft_set_id"
        ).fetchall()
        found = {}
        for ticket_id, set_id, retrieved in sets:
            ids = [c["chunk_id"] for c in retrieved]
            brands = conn.execute(
                "SELECT DISTINCT d.brand FROM kb_chunks c JOIN kb_documents d"
                " ON d.id = c.document_id WHERE c.id = ANY(%s)",
                (ids,),
            ).fetchall()
            texts = conn.execute(
                "SELECT text FROM rag_drafts WHERE draft_set_id = %s ORDER BY label", (set_id,)
            ).fetchall()
            found[ticket_id] = ({b[0] for b in brands}, [t[0] for t in texts])
    return found


def test_each_brands_tickets_are_drafted_from_its_own_help_center(
    kb_settings, kb_db, sandbox, tmp_path
):
    brands = two_brands(sandbox)
    services = ZendeskServices(
        settings_for(kb_settings, sandbox, tmp_path), kb_db, build_deferrer(kb_db.url)
    )
    report = services.sync_kb()[helpcenter.ARTICLES]
    assert report.added >= 2
    tickets = {
        name: sandbox.create_ticket(
            "Returning my blender", QUESTION, f"{name.lower()}-buyer@example.com", brand_id=bid
        )["id"]
        for name, bid in brands.items()
    }
    services.poller.poll()
    run_worker(services)

    found = drafted(kb_db)
    assert set(found) == set(tickets.values())
    for name, ticket_id in tickets.items():
        other = next(n for n in brands if n != name)
        retrieved_brands, texts = found[ticket_id]
        # only the ticket's brand, or knowledge that belongs to no brand (the sample KB)
        assert retrieved_brands <= {str(brands[name]), None}, (name, retrieved_brands)
        assert str(brands[name]) in retrieved_brands  # its own Help Center was found
        joined = " ".join(texts)
        assert name in joined and other not in joined, (name, texts)


def test_sharing_knowledge_across_brands_is_a_setting(kb_settings, kb_db, sandbox, tmp_path):
    brands = two_brands(sandbox)
    services = ZendeskServices(
        settings_for(kb_settings, sandbox, tmp_path, kb_share_across_brands=True),
        kb_db,
        build_deferrer(kb_db.url),
    )
    services.sync_kb()
    ticket = sandbox.create_ticket(
        "Returning my blender", QUESTION, "buyer@example.com", brand_id=brands["Acme"]
    )["id"]
    services.poller.poll()
    run_worker(services)
    retrieved_brands, _ = drafted(kb_db)[ticket]
    assert {str(brands["Acme"]), str(brands["Globex"])} <= retrieved_brands


def test_a_restricted_help_center_is_synced_for_agents_only(kb_settings, kb_db, sandbox, tmp_path):
    """A Help Center closed to the public ("restricted"): agents get its knowledge, customers
    never get it quoted."""
    brand = sandbox.add_brand("Initech", "initech", help_center_state="restricted")
    section = sandbox.add_brand_help_center(brand["id"])
    sandbox.add_article("Returning a blender", GLOBEX_RETURNS, section_id=section)
    sandbox.add_brand("Closed", "closed", help_center_state="disabled")
    services = ZendeskServices(
        settings_for(kb_settings, sandbox, tmp_path), kb_db, build_deferrer(kb_db.url)
    )
    services.sync_kb()
    with kb_db.connection() as conn:
        rows = conn.execute(
            "SELECT audience, metadata->>'visibility_problem' FROM kb_documents"
            " WHERE source = %s AND brand = %s AND deleted_at IS NULL",
            (helpcenter.ARTICLES, str(brand["id"])),
        ).fetchall()
    assert rows == [("internal", "the brand's Help Center is restricted")]
