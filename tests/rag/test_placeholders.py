"""Liquid placeholders in drafts: the known ones rendered, the rest left out, none left raw."""

from __future__ import annotations

import re

import pytest

from aitl.core.settings import PROJECT_ROOT
from rag import placeholders
from rag.extractive import ExtractiveDrafter
from rag.generation import DETAILED, GeneratedDraft
from rag.models import Ticket
from rag.pipeline import DraftMaker, DraftPipeline
from rag.prompts import PromptLibrary
from tests.support.chunks import make_chunk

VALUES = {
    "ticket.requester.name": "ana lópez",
    "ticket.requester.first_name": "Ana",
    "ticket.id": "4711",
    "current_user.name": "Sam Agent",
    "current_user.first_name": "Sam",
    "satisfaction.rating_url": "https://acme.zendesk.com/requests/4711/satisfaction/new",
}
RAW = re.compile(r"\{\{|\}\}|\{%|%\}")


def render(text: str, values=VALUES) -> placeholders.Rendered:
    done = placeholders.render(text, values)
    assert not RAW.search(done.text), done.text  # whatever the input, nothing raw comes out
    return done


def test_known_placeholders_are_rendered_with_or_without_spaces():
    done = render("Hi {{ticket.requester.first_name}}, about request #{{ ticket.id }}: done.")
    assert done.text == "Hi Ana, about request #4711: done."
    assert done.rendered == ("ticket.requester.first_name", "ticket.id")
    assert done.removed == () and done.gaps == ()


def test_filters_apply_as_liquid_defines_them():
    done = render(
        "Dear {{ticket.requester.name | capitalize}}. Signed {{ current_user.name | upcase }}."
        " Hello {{ticket.assignee.first_name | default: 'there'}}!"
    )
    assert done.text == "Dear Ana lópez. Signed SAM AGENT. Hello there!"
    assert "ticket.assignee.first_name" in done.rendered


def test_an_unknown_placeholder_is_removed_with_its_sentence_only():
    done = render(
        "Thanks for writing. Your plan {{ticket.organization.name}} renews monthly."
        " We refunded request {{ticket.id}}."
    )
    assert done.text == "Thanks for writing. We refunded request 4711."
    assert done.removed == ("{{ticket.organization.name}}",)


def test_a_known_name_without_a_value_and_an_unknown_filter_are_removed():
    done = render(
        "Your agent is {{ticket.assignee.name}}. Hi {{ticket.requester.name | reverse}}."
        " The rest stays.",
    )
    assert done.text == "The rest stays."
    assert done.removed == ("{{ticket.assignee.name}}", "{{ticket.requester.name | reverse}}")


def test_a_list_item_with_an_unknown_placeholder_goes_whole_and_the_others_stay():
    done = render("Steps:\n- Open {{dc.settings_page}}. Then save.\n- Restart the hub.")
    assert done.text == "Steps:\n- Restart the hub."


def test_a_tag_is_removed_with_its_whole_block_and_sentence():
    done = render(
        "We are on it.\n{% if ticket.priority == 'urgent' %}\nBilling will call you today.\n"
        "{% endif %}\nThanks, {{current_user.first_name}}."
    )
    assert done.text == "We are on it.\nThanks, Sam."
    assert done.removed == ("{% if ticket.priority == 'urgent' %}",)
    assert "Billing" not in done.text


def test_nested_blocks_end_at_their_own_end_tag():
    done = render(
        "Start. {% if a %}{% if b %}x{% endif %} still inside{% endif %} End.\n\nNext paragraph."
    )
    assert "inside" not in done.text and "Next paragraph." in done.text


def test_a_paragraph_made_only_of_placeholders_keeps_a_marker_to_fill():
    done = render("Hello.\n\n{{ticket.organization.name}}\n\nBye.")
    assert done.text == "Hello.\n\n[‹organization's name›]\n\nBye."
    assert done.gaps == ("[‹organization's name›]",) and done.removed == ()
    assert placeholders.markers(done.text) == ("[‹organization's name›]",)


def test_a_draft_that_is_only_a_placeholder_becomes_a_marker():
    done = render("{{ticket.requester.custom_order_number}}", {})
    assert done.text == "[‹customer's custom order number›]"


def test_a_placeholder_cut_short_by_a_chunk_boundary_is_not_left_raw():
    done = render("Good news. Your refund for {{ticket.requ")
    assert done.text == "Good news."


def test_a_placeholder_inside_a_link_renders_into_a_working_link():
    done = render("Tell us how we did: [rate this reply]({{satisfaction.rating_url}}).")
    assert done.text == (
        "Tell us how we did: "
        "[rate this reply](https://acme.zendesk.com/requests/4711/satisfaction/new)."
    )


def test_values_never_bring_a_placeholder_of_their_own():
    done = render("Hi {{ticket.requester.name}}.", {"ticket.requester.name": "{{x}} Eve"})
    assert done.text == "Hi x Eve."


def test_text_without_liquid_is_returned_as_is():
    text = "Hi there,\n\nNo braces { here } at all.\n"
    assert placeholders.render(text, VALUES).text == text


def test_leftovers_name_what_a_reply_cannot_post():
    body = "Hi {{ticket.requester.first_name}}. Org {{ticket.organization.name}}. [‹your name›]"
    assert placeholders.leftovers(body, VALUES) == (
        "{{ticket.organization.name}}",
        "[‹your name›]",
    )
    assert placeholders.leftovers("Hi {{ticket.requester.first_name}}.", VALUES) == ()


@pytest.fixture
def pipeline():
    """The real DraftPipeline around the extractive drafter, with retrieval replaced by one
    macro passage, so the test drives exactly what the generator quotes."""
    passage = make_chunk(
        1,
        1,
        "Refund issued",
        "Hi {{ticket.requester.first_name}}, your refund for request #{{ticket.id}} was issued."
        " Refunds for {{ticket.organization.name}} reach the card on file.",
    )

    class Retriever:
        def search(self, text, k, **kwargs):
            return [passage]

        def encode(self, text):
            return text

        def search_vector(self, vector, k, **kwargs):
            return [passage]

        def describe(self):
            return {"retriever": "fixed"}

    class Reranker:
        name = "none"

        def rerank(self, query, found):
            return list(found)

    drafter = ExtractiveDrafter(PromptLibrary(PROJECT_ROOT / "prompts"))
    makers = (
        DraftMaker(drafter, DETAILED, "variant"),
        DraftMaker(drafter, DETAILED, "variant"),
    )
    return DraftPipeline(Retriever(), Reranker(), makers, retrieve_k=1, context_k=1)


def test_every_pipeline_draft_is_rendered_and_records_what_it_lost(pipeline):
    ticket = Ticket(
        "Refund request",
        "Was my refund for the request issued to my card on file?",
        placeholders=VALUES,
    )
    result = pipeline.draft(ticket)
    for draft in result.drafts:
        assert not RAW.search(draft.text)
        assert "Hi Ana, your refund for request #4711 was issued." in draft.text
        assert draft.producer["placeholders"]["removed"] == ["{{ticket.organization.name}}"]
    # /aitl ask: no ticket values; every sentence of the passage needed one, so rather than
    # lose the answer the paragraph keeps it with gaps the agent fills before sending
    asked = pipeline.draft(
        Ticket("Refund request", "Was my refund for the request issued to my card on file?")
    )
    for draft in asked.drafts:
        assert not RAW.search(draft.text)
        assert (
            "Hi [‹customer's first name›], your refund for request #[‹ticket's id›]" in draft.text
        )
        assert draft.producer["placeholders"]["gaps"] == list(placeholders.markers(draft.text))


def test_a_draft_with_no_placeholder_keeps_its_producer_as_it_was():
    output = GeneratedDraft("Plain text.", (), {"backend": "x"})
    maker = DraftMaker(None, DETAILED, "variant")
    draft = DraftPipeline._draft("A", output, maker, {}, Ticket("s", "b"))
    assert draft.text == "Plain text." and "placeholders" not in draft.producer
