"""Links kept from an article's HTML to the draft: Markdown links made absolute and safe,
never cut by chunking, sentence splitting or the LLM's passage budget."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from aitl.core.settings import PROJECT_ROOT
from rag import links
from rag.chunking import Chunker
from rag.extractive import ExtractiveDrafter, readable_lines, sentences
from rag.generation import CONCISE, DETAILED, PASSAGE_CHARS, DraftInput, llm_messages
from rag.loaders import html_to_text, load_file
from rag.models import SourceDocument, Ticket
from rag.prompts import PromptLibrary
from tests.support.chunks import make_chunk

ARTICLE_URL = "https://acme.zendesk.com/hc/en-us/articles/360001-Reset-your-password"
PROMPTS = PromptLibrary(PROJECT_ROOT / "prompts")


def body_of(html: str, base_url: str | None = ARTICLE_URL) -> str:
    return html_to_text(html, fallback="article", base_url=base_url)[1]


def test_article_links_become_absolute_markdown_links():
    body = body_of(
        "<p>Read <a href='https://status.acme.com/'>our status page</a>, the"
        " <a href='/hc/en-us/articles/360002-Two-factor'>two-factor article</a>, a"
        " <a href='360003-Backup-codes'>sibling article</a> or"
        " <a href='#if-the-email-is-missing'>the last step</a>.</p>"
    )
    assert body == (
        "Read [our status page](https://status.acme.com/), the"
        " [two-factor article](https://acme.zendesk.com/hc/en-us/articles/360002-Two-factor), a"
        " [sibling article](https://acme.zendesk.com/hc/en-us/articles/360003-Backup-codes) or"
        f" [the last step]({ARTICLE_URL}#if-the-email-is-missing)."
    )


def test_unsafe_links_keep_only_their_text_and_mailto_stays_a_link():
    body = body_of(
        "<p><a href='javascript:alert(1)'>Click me</a> <a href='java&#9;script:alert(2)'>Or"
        " me</a> <a href='data:text/html,x'>Data</a> <a href='mailto:help@acme.com'>Write"
        " to us</a></p>"
    )
    assert body == "Click me Or me Data [Write to us](mailto:help@acme.com)"
    assert "javascript" not in body and "data:" not in body


def test_a_link_without_text_shows_its_url_and_spreads_over_no_lines():
    body = body_of(
        "<p>Download: <a href='/files/guide.pdf'></a></p>"
        "<p><a href='mailto:help@acme.com'> </a></p>"
        "<p><a href='/x'><span>Two\n  lines</span>\n<b>of text</b></a></p>"
    )
    assert body.splitlines() == [
        "Download: [https://acme.zendesk.com/files/guide.pdf]"
        "(https://acme.zendesk.com/files/guide.pdf)",
        "[help@acme.com](mailto:help@acme.com)",
        "[Two lines of text](https://acme.zendesk.com/x)",
    ]


def test_links_in_list_items_and_tables_keep_their_lines():
    body = body_of(
        "<ol><li>Open <a href='/hc/app'>the app</a></li><li>Tap <b>Reset</b></li></ol>"
        "<table><tr><th>Plan</th><th>Guide</th></tr>"
        "<tr><td>Plus</td><td><a href='/hc/plus'>Plus guide</a></td></tr></table>"
    )
    assert body.splitlines() == [
        "Open [the app](https://acme.zendesk.com/hc/app)",
        "Tap Reset",
        "Plan Guide",
        "Plus [Plus guide](https://acme.zendesk.com/hc/plus)",
    ]


def test_a_url_with_spaces_or_parentheses_is_encoded_so_the_link_still_parses():
    body = body_of("<p><a href='https://acme.com/a guide (v2)'>Guide</a></p>")
    assert body == "[Guide](https://acme.com/a%20guide%20%28v2%29)"
    assert [link.url for link in links.find(body)] == ["https://acme.com/a%20guide%20%28v2%29"]


def test_an_html_file_without_a_base_keeps_absolute_links_and_drops_relative_ones(tmp_path):
    page = tmp_path / "reset.html"
    page.write_text(
        "<html><head><title>Reset</title></head><body><p>See <a href='other.html'>the other"
        " page</a>, <a href='#top'>the top</a> and <a href='https://acme.com/x'>our site</a>."
        "</p></body></html>"
    )
    [doc] = load_file(page, root=tmp_path, source="files", max_bytes=10_000)
    assert doc.body == "See the other page, the top and [our site](https://acme.com/x)."


def document(body: str, fmt: str = "html") -> SourceDocument:
    return SourceDocument(
        source="tests",
        external_id="1",
        title="Reset",
        body=body,
        updated_at=datetime.now(UTC),
        metadata={"format": fmt},
    )


def long_link(i: int) -> str:
    slug = "-".join(["step", str(i), *["reset"] * (i % 7 * 6)])  # up to ~230 characters
    return f"[step {i}. see the guide, then retry]({ARTICLE_URL}/{slug})"


@pytest.mark.parametrize("fmt", ["html", "md"])
@pytest.mark.parametrize(("size", "overlap"), [(80, 40), (120, 30), (200, 60), (400, 100)])
def test_chunking_never_cuts_a_link(fmt, size, overlap):
    """Links longer than the overlap (and than the chunk), at every offset from a boundary."""
    parts = []
    for i in range(24):
        parts.append("Word " * (i % 5) + f"Sentence {i}. See {long_link(i)}.")
        if i % 6 == 5:
            parts.append("\n\n")
    body = " ".join(parts)
    chunks = Chunker(size, overlap).split(document(body, fmt))
    assert len(chunks) > 5
    wanted = {link.markdown for link in links.find(body)}
    kept = set()
    for chunk in chunks:
        whole = [link.markdown for link in links.find(chunk)]
        kept.update(whole)
        rest = links.LINK.sub("", chunk)
        assert "](" not in rest and "https://" not in rest, f"a link was cut: {chunk!r}"
        assert not re.search(r"\[step \d+\.", rest), f"a link's text was cut off: {chunk!r}"
    assert kept == wanted, "every link reaches some chunk whole"


def test_chunks_stay_within_size_when_their_links_fit():
    body = " ".join(f"Sentence {i} has [a link](https://a.co/{i}) in it." for i in range(40))
    chunks = Chunker(120, 30).split(document(body))
    assert all(len(c) <= 120 for c in chunks), "links count at their full length"


def test_sentences_do_not_split_inside_a_link_and_bold_markers_spare_urls():
    line = (
        "Open **Settings**. Follow [Step 1. Open the app. Then tap Reset]"
        "(https://acme.com/hc/a__b__c?x=1.%20Y) now. Done."
    )
    assert sentences(line) == [
        "Open **Settings**.",
        "Follow [Step 1. Open the app. Then tap Reset](https://acme.com/hc/a__b__c?x=1.%20Y) now.",
        "Done.",
    ]
    assert readable_lines(line)[1].startswith(
        "Follow [Step 1. Open the app. Then tap Reset](https://acme.com/hc/a__b__c?x=1.%20Y)"
    )
    assert readable_lines("**[Reset](https://acme.com/a__b__c)** is here.") == [
        "[Reset](https://acme.com/a__b__c) is here."
    ]


LINKED = make_chunk(
    11,
    1,
    "Reset your password",
    "To reset your password, tap Forgot password on the sign-in screen. If the email is"
    " missing, follow [Step 2. Request a new reset email](https://acme.zendesk.com/hc/en-us/"
    "articles/360001-Reset-your-password#step-2) to get another one. Reset links expire"
    " after 24 hours.",
    0.9,
    url=ARTICLE_URL,
)
TICKET = Ticket("Password reset email missing", "My password reset email never arrived.")


def test_an_extractive_draft_keeps_the_passages_link_whole():
    for variant in (CONCISE, DETAILED):
        draft = ExtractiveDrafter(PROMPTS).invoke(DraftInput(TICKET, (LINKED,), variant))
        [link] = list(links.find(draft.text))
        assert link.text == "Step 2. Request a new reset email"
        assert link.url.endswith("360001-Reset-your-password#step-2")


def test_the_llm_passage_budget_never_cuts_a_link_in_half():
    lead = "Reset steps are below. " * ((PASSAGE_CHARS - 40) // 23)
    passage = make_chunk(11, 1, "Reset", lead + f"Use {long_link(6)} today.", 0.9)
    user = llm_messages(PROMPTS, DraftInput(TICKET, (passage,), DETAILED))["user"]
    assert "[step 6." not in user and ARTICLE_URL not in user, "the link is dropped, not cut"
    short = make_chunk(11, 1, "Reset", f"Use {long_link(1)} today.", 0.9)
    user = llm_messages(PROMPTS, DraftInput(TICKET, (short,), DETAILED))["user"]
    assert long_link(1) in user


def test_cut_keeps_text_before_a_link_that_straddles_the_limit():
    text = "abc [link](https://a.co/x) def"
    assert links.cut(text, 10) == "abc"
    assert links.cut(text, 26) == "abc [link](https://a.co/x)"
    assert links.cut(text, 5) == "abc"
    assert links.cut(text, 3) == "abc"
