"""Drafts know what the customer attached: the LLM prompt says so, and the extractive
drafter never asks for a kind of file the customer already sent."""

from __future__ import annotations

import pytest

from aitl.core.settings import PROJECT_ROOT
from rag import attachments
from rag.extractive import ExtractiveDrafter
from rag.generation import CONCISE, DETAILED, DraftInput, llm_messages
from rag.models import Attachment, Ticket
from rag.prompts import PromptLibrary
from tests.support.chunks import make_chunk

PROMPTS = PromptLibrary(PROJECT_ROOT / "prompts")
SCREENSHOT = Attachment("screenshot.png", "image/png", 240 * 1024)
LOGS = Attachment("logs.txt", "text/plain", 3 * 1024)
SYNC = make_chunk(
    1,
    1,
    "Hub sync errors",
    "When the hub shows a sync error, restart the hub from Settings > Hub. "
    "If the sync error comes back, please send us a screenshot of the error message. "
    "Our team reads every hub sync error report within a day.",
)


def ticket(*files: Attachment) -> Ticket:
    return Ticket(
        "Hub sync error", "My hub shows a sync error message every morning.", attachments=files
    )


def test_the_llm_prompt_names_what_the_customer_attached():
    user = llm_messages(PROMPTS, DraftInput(ticket(SCREENSHOT, LOGS), (SYNC,), CONCISE))["user"]
    assert "screenshot.png (image, 240 KB), logs.txt (text, 3 KB)" in user
    assert "do not ask for them again" in user
    assert user.index("attached") < user.index("Customer:"), "said before the ticket"


def test_without_attachments_the_prompt_is_as_before():
    user = llm_messages(PROMPTS, DraftInput(ticket(), (SYNC,), CONCISE))["user"]
    assert "attached" not in user
    inline_only = Attachment("logo.png", "image/png", 900, inline=True)
    assert llm_messages(PROMPTS, DraftInput(ticket(inline_only), (SYNC,), CONCISE))["user"] == user


@pytest.mark.parametrize("variant", [CONCISE, DETAILED], ids=lambda v: v.name)
def test_the_extractive_draft_does_not_ask_for_a_screenshot_already_sent(variant):
    drafter = ExtractiveDrafter(PROMPTS)
    asking = drafter.invoke(DraftInput(ticket(), (SYNC,), variant)).text
    assert "please send us a screenshot" in asking, "without one, the article's ask stays"
    sent = drafter.invoke(DraftInput(ticket(SCREENSHOT), (SYNC,), variant)).text
    assert "screenshot" not in sent
    assert "restart the hub from Settings > Hub" in sent, "the rest of the answer stays"
    other = drafter.invoke(DraftInput(ticket(LOGS), (SYNC,), variant)).text
    assert "please send us a screenshot" in other, "logs are not a screenshot"


@pytest.mark.parametrize(
    ("sentence", "files", "asks"),
    [
        ("Please send us a screenshot of the error.", [SCREENSHOT], True),
        ("Could you attach a photo of the label?", [Attachment("IMG_0042.HEIC")], True),
        ("Attach your logs to a reply.", [LOGS], True),
        (
            "Please upload the invoice.",
            [Attachment("Invoice-2026-03.pdf", "application/pdf")],
            True,
        ),
        ("Forward us the receipt as a PDF.", [Attachment("scan.pdf", "application/pdf")], True),
        ("Please send us a screenshot of the error.", [LOGS], False),
        ("Log in and open Settings, then attach the file.", [LOGS], False),
        ("We will send you a new receipt by email.", [Attachment("receipt.pdf")], False),
        ("A screenshot helps us find the cause.", [SCREENSHOT], False),
        ("Please send us a screenshot of the error.", [], False),
    ],
)
def test_which_sentences_ask_for_a_file_already_sent(sentence, files, asks):
    kinds = attachments.sent_kinds(files)
    assert attachments.asks_for_sent(sentence, kinds) is asks


def test_describe_gives_kind_and_size_or_the_name_alone():
    assert attachments.describe(SCREENSHOT) == "screenshot.png (image, 240 KB)"
    assert attachments.describe(Attachment("a.pdf", "application/pdf")) == "a.pdf (PDF)"
    assert attachments.describe(Attachment("blob", "application/octet-stream", 5)) == "blob"
    assert attachments.describe(Attachment("x", None, 10)) == "x"
    sizes = [attachments.human_size(n) for n in (0, 1023, 1024, 1_300_000, 50 * 1024**2)]
    assert sizes == ["0 bytes", "1023 bytes", "1 KB", "1.2 MB", "50 MB"]
