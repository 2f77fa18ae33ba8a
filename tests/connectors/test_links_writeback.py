"""Links from a Help Center article to the customer, against the Zendesk sandbox over real
HTTP: the synced article keeps its relative links as absolute Markdown links, a draft can
carry one, and a reply with a link is posted once as HTML the customer can click."""

from __future__ import annotations

import pytest

from aitl.core.queue import build_deferrer
from connectors import exceptions, helpcenter
from connectors.services import ZendeskServices
from rag import links
from rag.models import Ticket as DraftTicket
from tests.support.zendesk import sandbox_settings

CUSTOMER = "jane.doe@example.com"
ARTICLE = (
    "<p>A reset email can take five minutes to arrive.</p>"
    "<p>If the reset email is missing, follow <a href='/hc/en-us/articles/42-Request-a-reset'>"
    "request a new reset email</a>, or <a href='#spam'>check your spam folder</a>.</p>"
    "<ul><li>Reset links expire after 24 hours: see"
    " <a href='43-Reset-link-expired'>expired reset links</a>.</li></ul>"
    "<p><a href='javascript:alert(1)'>Never a link</a></p>"
)


@pytest.fixture
def settings(kb_settings, sandbox, tmp_path):
    return sandbox_settings(
        kb_settings,
        sandbox,
        tmp_path,
        zendesk_public_writeback=True,
    )


@pytest.fixture
def services(settings, kb_db):
    return ZendeskServices(settings, kb_db, build_deferrer(kb_db.url))


def test_a_synced_articles_relative_links_reach_chunks_and_drafts_as_absolute_links(
    services, sandbox
):
    article = sandbox.add_article("Reset email missing", ARTICLE)
    report = services.sync_kb()[helpcenter.ARTICLES]
    assert (report.added, report.failures) == (1, [])
    with services.db.connection() as conn:
        [(url, body)] = conn.execute(
            "SELECT url, body FROM kb_documents WHERE source = %s AND external_id = %s",
            (helpcenter.ARTICLES, str(article["id"])),
        ).fetchall()
        chunks = conn.execute(
            "SELECT c.text FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id"
            " WHERE d.url = %s AND c.retired_at IS NULL",
            (url,),
        ).fetchall()
    hc = f"{sandbox.url}/hc/en-us/articles"
    assert url.startswith(f"{hc}/{article['id']}-")
    expected = [
        f"[request a new reset email]({hc}/42-Request-a-reset)",
        f"[check your spam folder]({url}#spam)",
        f"[expired reset links]({hc}/43-Reset-link-expired)",
    ]
    assert [link.markdown for link in links.find(body)] == expected
    assert "Never a link" in body and "javascript" not in body
    chunk_text = "\n".join(text for (text,) in chunks)
    assert all(link in chunk_text for link in expected)

    ticket = DraftTicket(
        "Reset email missing",
        "The reset email is missing after five minutes. Should I check the spam folder or"
        " request a new reset email?",
    )
    drafts = services.drafter.pipeline().draft(ticket).drafts
    carried = {link.markdown for d in drafts for link in links.find(d.text)}
    assert carried and carried <= set(expected), "a draft carries the article's links whole"


REPLY = (
    "Hi Jane,\n\nPlease follow [request a new reset email](https://acme.zendesk.com/hc/en-us/"
    "articles/42-Request-a-reset?a=1&b=2) & check <spam>.\n\nBest regards"
)


def test_a_reply_with_a_link_is_posted_as_html_once_even_when_retried(services, sandbox):
    ticket = sandbox.create_ticket("Reset", "My reset email is missing.", CUSTOMER)
    wb = services.writeback.request(key="adopt-link", ticket_id=ticket["id"], body=REPLY)
    sandbox.delay("PUT", rf"tickets/{ticket['id']}", seconds=4, after_apply=True)
    with pytest.raises(exceptions.ZendeskUnavailable):
        services.writeback.run(wb.id)  # Zendesk wrote the comment, the client timed out
    comment_id = services.writeback.run(wb.id)
    posted = [c for c in sandbox.comments(ticket["id"]) if "Please follow" in c["plain_body"]]
    assert [c["id"] for c in posted] == [comment_id], "the retry found the posted comment"
    [comment] = posted
    href = "https://acme.zendesk.com/hc/en-us/articles/42-Request-a-reset?a=1&amp;b=2"
    assert f'<a href="{href}">request a new reset email</a>' in comment["html_body"]
    assert "&amp; check &lt;spam&gt;." in comment["html_body"], "the rest is escaped"
    assert comment["html_body"].count("<p>") == 3
    assert "Please follow request a new reset email & check <spam>." in comment["plain_body"]
    assert "[request a new reset email](https://acme.zendesk.com/" in comment["body"]


def test_a_reply_without_links_is_still_posted_as_plain_text(services, sandbox):
    ticket = sandbox.create_ticket("Reset", "My reset email is missing.", CUSTOMER)
    wb = services.writeback.request(key="adopt-plain", ticket_id=ticket["id"], body="<b>Done</b>")
    comment_id = services.writeback.run(wb.id)
    [comment] = [c for c in sandbox.comments(ticket["id"]) if c["id"] == comment_id]
    assert comment["body"] == comment["plain_body"] == "<b>Done</b>"
    assert "&lt;b&gt;Done&lt;/b&gt;" in comment["html_body"]


def test_a_comment_posted_as_html_keeps_its_links_in_body_and_their_text_in_plain_body(
    services, sandbox
):
    """The sandbox answers as Zendesk does for a comment posted with ``html_body``."""
    ticket = sandbox.create_ticket("Reset", "My reset email is missing.", CUSTOMER)
    body = "See [the guide](https://a.co/x?y=1&z=2) or [https://a.co/](https://a.co/)."
    comment_id = services.client.add_comment(ticket["id"], body, public=False)
    [comment] = [c for c in sandbox.comments(ticket["id"]) if c["id"] == comment_id]
    assert comment["plain_body"] == "See the guide or https://a.co/."
    assert comment["body"] == "See [the guide](https://a.co/x?y=1&z=2) or https://a.co/."
    assert '<a href="https://a.co/x?y=1&amp;z=2">the guide</a>' in comment["html_body"]
    assert comment["public"] is False
