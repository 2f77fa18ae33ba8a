"""Links in drafts and sources render as Slack links on the card and in the full draft,
with the text around them escaped, and are never cut by a fold or a section split."""

from __future__ import annotations

import json

from bot.card_views import CardContent, as_dicts, card_blocks, fold_mrkdwn, mrkdwn
from bot.modals_views import full_draft_modal
from rag.store import ChunkRef, StoredDraft

GUIDE = "https://acme.zendesk.com/hc/en-us/articles/360001-Reset?step=2&lang=en"
SLACK_GUIDE = "https://acme.zendesk.com/hc/en-us/articles/360001-Reset?step=2&amp;lang=en"


def draft(label: str, text: str) -> StoredDraft:
    return StoredDraft(1 if label == "A" else 2, 7, label, text, [10], {"variant": "concise"})


def card(drafts, sources=()) -> list[dict]:
    blocks, _ = card_blocks(CardContent(7, "ticket", {"number": 5}, drafts, sources, []))
    return as_dicts(blocks)  # slack_sdk validates every block against Slack's limits


def section_text(rendered: list[dict], block_id: str) -> str:
    return next(b["text"]["text"] for b in rendered if b.get("block_id") == block_id)


def test_a_drafts_markdown_link_renders_as_a_slack_link_with_the_text_around_escaped():
    text = f"Hi <Jane> & team,\n\nFollow [Step 2 | reset <now>]({GUIDE}) & reply. [x](javascript:1)"
    rendered = card([draft("A", text), draft("B", "Short B.")])
    shown = section_text(rendered, "aitl.draft.A")
    assert f"<{SLACK_GUIDE}|Step 2 / reset &lt;now&gt;>" in shown
    assert "Hi &lt;Jane&gt; &amp; team," in shown and "&gt;> &amp; reply." in shown
    assert "[Step 2" not in shown and "<javascript" not in shown
    assert "[x](javascript:1)" in shown, "only http(s) and mailto become links"


def test_a_folded_preview_keeps_a_link_whole_or_leaves_it_out():
    slug = "long-slug-" * 30
    text = f"{'word ' * 130}see [the guide]({GUIDE}/{slug}) then {'more ' * 200}"
    whole = f"<{SLACK_GUIDE}/{slug}|the guide>"
    shown = section_text(card([draft("A", text), draft("B", "Short B.")]), "aitl.draft.A")
    assert whole in shown and len(shown) <= 3000
    for limit in range(640, 720, 7):  # folds landing before, inside and after the link
        folded, cut = fold_mrkdwn(text, limit, 2900)
        assert cut and folded.count("<https://") == folded.count(whole)
        assert "[the guide" not in folded and "long-slug" not in folded.replace(whole, "")
    # a link whose URL alone passes the room left: its text only, never half a URL
    assert fold_mrkdwn(f"See [the guide]({GUIDE}/{slug}).", 700, 200) == ("See the guide.", False)


def test_source_snippets_render_links_too():
    chunk = f"Follow [Step 2]({GUIDE}) to reset. Reset links expire after 24 hours."
    ref = ChunkRef(10, 1, "Reset", GUIDE, "360001", chunk)
    rendered = card([draft("A", "Short A."), draft("B", "Short B.")], [ref])
    assert f"_Follow <{SLACK_GUIDE}|Step 2> to reset." in json.dumps(rendered).replace("\\n", "\n")


def test_the_full_draft_keeps_links_whole_across_its_sections():
    link = f"[Step 2]({GUIDE})"
    text = ("<b> & " * 200 + link + " ") * 12
    view = full_draft_modal("A", text, "ticket #5").to_dict()
    parts = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
    assert len(parts) > 1 and all(len(p) <= 3000 for p in parts)
    assert "".join(parts) == mrkdwn(text)
    assert all(p.count(f"<{SLACK_GUIDE}|Step 2>") == p.count("<https://") for p in parts)
    assert sum(p.count(f"<{SLACK_GUIDE}|Step 2>") for p in parts) == 12
