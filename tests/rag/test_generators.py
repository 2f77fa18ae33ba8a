"""Draft generators (OpenAI-compatible, local Hugging Face, extractive) and the A/B pipeline.

The OpenAI backend talks real HTTP to a local fake server; the HF backend runs a tiny GPT-2
built from a config; the pipeline runs on the session's embedded Postgres with the sample KB.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aitl.core.settings import PROJECT_ROOT
from rag import exceptions, factory
from rag.extractive import ExtractiveDrafter
from rag.generation import CONCISE, DETAILED, DraftInput, DraftVariant, GeneratedDraft
from rag.llm_backends import HuggingFaceDrafter, OpenAIDrafter
from rag.models import Message, RetrievedChunk, Ticket
from rag.prompts import PromptLibrary
from tests.conftest import clone_database, drop_database, make_settings
from tests.support.chunks import make_chunk
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.tiny_models import build_lora_adapter, build_tiny_causal_lm

PROMPTS = PROJECT_ROOT / "prompts"


@pytest.fixture
def database_url(pg_server_url, samples_template_url):
    """Overrides conftest's empty database: here ``settings``/``db`` hold the sample KB,
    ingested once per session (``rag.factory.ingestor(...).ingest_path(sample_kb, ...)``)."""
    url = clone_database(pg_server_url, samples_template_url)
    yield url
    drop_database(pg_server_url, url)


def prompt_file(name: str) -> str:
    return (PROMPTS / name).read_text(encoding="utf-8").strip()


chunk = make_chunk


PASSWORD = chunk(
    11,
    1,
    "Reset your password",
    "# Reset your password\n"
    "To reset your password, tap **Forgot password** on the sign-in screen. "
    "The reset email arrives within five minutes. Reset links expire after 24 hours.\n"
    "## If the email is missing\n"
    "Check your spam folder for the reset email. You can request a new reset link at any time.",
    0.9,
    url="https://help.example/reset-your-password",
)
TWO_FACTOR = chunk(
    21,
    2,
    "Two-factor authentication",
    "## Sign-in codes\n"
    "After a password reset, two-factor authentication asks for a code from your "
    "authenticator app. Lost your phone? Use a **backup code** to reset two-factor sign-in.",
    0.8,
)
ACCOUNT_EMAIL = chunk(
    31,
    3,
    "Account email",
    "Your account email is where every password reset email is sent. "
    "Change your account email under Settings > Account.",
    0.7,
)
SHIPPING = chunk(
    41,
    4,
    "Shipping to Canada",
    "We ship to Canada and Mexico. Customs fees are collected on delivery.",
    0.6,
)
PASSAGES = (PASSWORD, TWO_FACTOR, ACCOUNT_EMAIL, SHIPPING)

TICKET = Ticket(
    subject="Password reset email never arrives",
    body="I asked to reset my password but no reset email came. Does the link expire?",
    thread=(
        Message("customer", "Still nothing in my inbox."),
        Message("agent", "INTERNAL: customer is on the legacy plan", public=False),
    ),
    external_id="T-1",
)


def source_sentences(passage: RetrievedChunk) -> list[str]:
    """The passage's sentences as a reader would see them (no Markdown), headings left out."""
    sentences = []
    for line in passage.text.splitlines():
        if line.startswith("#"):
            continue
        line = line.replace("**", "")
        sentences += [s for s in re.split(r"(?<=[.?!])\s+", line) if s]
    return sentences


def sentences_in(text: str, passages) -> list[str]:
    return [s for p in passages for s in source_sentences(p) if s in text]


# --- OpenAI-compatible endpoint ----------------------------------------------------------


def openai_drafter(tmp_path: Path, base_url: str | None, **overrides):
    settings = make_settings(
        None,
        tmp_path,
        generator="openai",
        openai_base_url=base_url,
        openai_model="tiny-test-llm",
        openai_timeout_s=5,
        generation_max_new_tokens=64,
        **overrides,
    )
    return factory.generator(settings)


def test_openai_drafter_sends_prompts_passages_and_variant_temperature(tmp_path):
    with FakeOpenAI("Tap Forgot password on the sign-in screen [1].") as server:
        drafter = openai_drafter(tmp_path, server.base_url)
        assert isinstance(drafter, OpenAIDrafter)
        concise = drafter.invoke(DraftInput(TICKET, PASSAGES[:2], CONCISE))
        detailed = drafter.invoke(DraftInput(TICKET, PASSAGES[:2], DETAILED))

    assert server.paths == ["/v1/chat/completions"] * 2
    first, second = server.requests
    assert first["model"] == "tiny-test-llm"
    assert first.get("max_completion_tokens", first.get("max_tokens")) == 64
    assert first["temperature"] == pytest.approx(CONCISE.temperature)
    assert second["temperature"] == pytest.approx(DETAILED.temperature)
    assert CONCISE.temperature != DETAILED.temperature

    roles = [m["role"] for m in first["messages"]]
    assert roles == ["system", "user"]
    system, user = (m["content"] for m in first["messages"])
    assert system == prompt_file("draft_system.txt")
    assert TICKET.subject in user and TICKET.body in user
    assert "- customer: Still nothing in my inbox." in user
    assert "INTERNAL" not in user, "internal notes must never reach the model"
    # the variant's passages, as clean text under their titles: no Markdown, no numbers
    for passage in PASSAGES[:2]:
        assert f"{passage.title}\n" in user
        assert all(line in user for line in source_sentences(passage)[:2])
    assert "**" not in user and "#" not in user
    assert PASSAGES[2].title not in user, "CONCISE drafts from its first two passages"
    assert prompt_file("style_concise.txt") in user
    assert prompt_file("style_detailed.txt") in second["messages"][1]["content"]

    assert concise.text == "Tap Forgot password on the sign-in screen [1]."
    assert concise.producer == {
        "backend": "openai",
        "model": "tiny-test-llm",
        "base_url": server.base_url,
        "variant": "concise",
        "temperature": CONCISE.temperature,
    }
    assert detailed.producer["variant"] == "detailed"
    assert detailed.producer["temperature"] == DETAILED.temperature


def test_openai_drafter_without_passages_says_so_in_the_prompt(tmp_path):
    with FakeOpenAI("Could you tell me which device you use?") as server:
        draft = openai_drafter(tmp_path, server.base_url).invoke(DraftInput(TICKET, (), CONCISE))
    assert "(no article found)" in server.requests[0]["messages"][1]["content"]
    assert draft.cited == ()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Check your spam folder [2].", (TWO_FACTOR,)),
        ("  Use the link [1][3], see also [3].\n", (PASSWORD, ACCOUNT_EMAIL)),
        ("Please check your inbox.", PASSAGES[:3]),  # cites nothing: all passages count
        ("As noted in [7] and [0].", PASSAGES[:3]),  # only numbers it was never given
    ],
)
def test_openai_citations_map_to_numbered_passages(tmp_path, answer, expected):
    with FakeOpenAI(answer) as server:
        draft = openai_drafter(tmp_path, server.base_url).invoke(
            DraftInput(TICKET, PASSAGES[:3], CONCISE)
        )
    assert draft.text == answer.strip()
    assert draft.cited == expected


def test_openai_endpoint_failing_raises_generator_unavailable(tmp_path):
    # retry-after-ms is what real OpenAI-compatible servers send; it keeps the client's two
    # retries from sleeping for the default exponential backoff (~1.5 s in total)
    with FakeOpenAI(lambda body: Reply(status=500, headers={"retry-after-ms": "5"})) as server:
        drafter = openai_drafter(tmp_path, server.base_url)
        with pytest.raises(exceptions.GeneratorUnavailable) as caught:
            drafter.invoke(DraftInput(TICKET, PASSAGES[:1], CONCISE))
    assert server.base_url in str(caught.value)
    assert "500" in str(caught.value)
    assert len(server.requests) == 3, "one call and max_retries=2 retries"


def test_openai_without_base_url_is_misconfigured(tmp_path):
    with pytest.raises(exceptions.GeneratorMisconfigured, match="AITL_OPENAI_BASE_URL"):
        openai_drafter(tmp_path, None)
    with pytest.raises(exceptions.GeneratorMisconfigured, match="AITL_OPENAI_BASE_URL"):
        openai_drafter(tmp_path, "")


# --- local Hugging Face model ------------------------------------------------------------

GREEDY = DraftVariant("greedy", "style_concise.txt", 0.0, max_passages=2, max_sentences=4)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "model")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_lm, tmp_path_factory) -> Path:
    return build_lora_adapter(tiny_lm, tmp_path_factory.mktemp("tiny-lora") / "adapter")


def hf_drafter(tmp_path: Path, **overrides):
    settings = make_settings(
        None, tmp_path, generator="hf", hf_max_new_tokens=8, hf_copy_bias=0.0, **overrides
    )
    return factory.generator(settings)


def body_of(text: str) -> str:
    """What the model wrote: the reply without the greeting and closing it is framed in."""
    closing = prompt_file("closing.txt")
    return text.split("\n\n", 2)[-1].replace(closing, "").strip()


def test_hf_drafter_generates_with_a_local_model(tmp_path, tiny_lm):
    drafter = hf_drafter(tmp_path, hf_model_path=tiny_lm)
    assert isinstance(drafter, HuggingFaceDrafter)
    sampled = drafter.invoke(DraftInput(TICKET, PASSAGES[:2], CONCISE))
    greedy = drafter.invoke(DraftInput(TICKET, PASSAGES[:2], GREEDY))
    again = drafter.invoke(DraftInput(TICKET, PASSAGES[:2], GREEDY))

    greeting = PromptLibrary(PROMPTS).render("greeting.txt", subject=TICKET.subject)
    for draft in (sampled, greedy):
        assert isinstance(draft, GeneratedDraft)
        assert draft.text.startswith(greeting), "the reply opens with the greeting"
        assert draft.text.endswith(prompt_file("closing.txt")), "and ends with the closing"
        assert len(body_of(draft.text).split()) <= 8, "max_new_tokens bounds what it wrote"
        assert set(draft.cited) <= set(PASSAGES[:2])
    assert greedy.text == again.text, "temperature 0 decodes greedily"
    assert sampled.producer == {
        "backend": "hf",
        "model": str(tiny_lm.resolve()),
        "adapter": None,
        "variant": "concise",
        "temperature": CONCISE.temperature,
    }
    assert greedy.producer["temperature"] == 0.0


def test_hf_drafter_applies_a_lora_adapter(tmp_path, tiny_lm, tiny_adapter):
    request = DraftInput(TICKET, PASSAGES[:2], GREEDY)
    base = hf_drafter(tmp_path, hf_model_path=tiny_lm).invoke(request)
    tuned = hf_drafter(tmp_path, hf_model_path=tiny_lm, hf_adapter_path=tiny_adapter).invoke(
        request
    )
    assert tuned.producer["backend"] == "hf"
    assert tuned.producer["adapter"] == str(tiny_adapter.resolve())
    assert tuned.producer["model"] == base.producer["model"]
    assert tuned.text != base.text, "the adapter's non-zero weights change greedy output"


def test_hf_drafter_needs_an_existing_local_model(tmp_path, tiny_lm):
    with pytest.raises(exceptions.ModelNotFound, match="AITL_HF_MODEL_PATH"):
        hf_drafter(tmp_path, hf_model_path=tmp_path / "no-such-model")
    with pytest.raises(exceptions.ModelNotFound, match="AITL_HF_ADAPTER_PATH"):
        hf_drafter(tmp_path, hf_model_path=tiny_lm, hf_adapter_path=tmp_path / "no-adapter")


def test_hf_drops_passages_that_do_not_fit_the_model_context(tmp_path, tiny_lm):
    long = chunk(99, 9, "Reset your password", "Tap Forgot password to reset it. " * 120)
    short = chunk(98, 8, "Sign in", "Use the email address you signed up with.")
    # passages are cut to 900 characters, so it takes a long ticket for one not to fit
    ticket = Ticket("Pairing", "My device will not pair with the hub after the update. " * 22)
    drafter = hf_drafter(tmp_path, hf_model_path=tiny_lm)  # tiny_lm has n_positions=512
    draft = drafter.invoke(DraftInput(ticket, (short, long), CONCISE))
    assert [c.chunk_id for c in draft.cited] == [98], "the passage that does not fit is dropped"


def test_hf_ticket_longer_than_the_model_context_is_a_generation_error(tmp_path, tiny_lm):
    huge = Ticket("Help", "My device will not pair with the hub. " * 200)
    drafter = hf_drafter(tmp_path, hf_model_path=tiny_lm)
    with pytest.raises(exceptions.GenerationError, match="context"):
        drafter.invoke(DraftInput(huge, PASSAGES, CONCISE))


# --- extractive drafter -------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractive() -> ExtractiveDrafter:
    return ExtractiveDrafter(PromptLibrary(PROMPTS))


def test_extractive_draft_has_greeting_and_closing(extractive):
    draft = extractive.invoke(DraftInput(TICKET, PASSAGES, CONCISE))
    greeting = prompt_file("greeting.txt").format(subject=TICKET.subject)
    assert f'"{TICKET.subject}"' in greeting
    assert draft.text.startswith(greeting + "\n\n")
    assert draft.text.endswith("\n\n" + prompt_file("closing.txt"))
    assert draft.producer == {
        "backend": "extractive",
        "variant": "concise",
        "max_passages": CONCISE.max_passages,
        "max_sentences": CONCISE.max_sentences,
    }


@pytest.mark.parametrize("variant", [CONCISE, DETAILED], ids=lambda v: v.name)
def test_extractive_cites_exactly_the_passages_it_quotes(extractive, variant):
    draft = extractive.invoke(DraftInput(TICKET, PASSAGES, variant))
    assert draft.cited, "relevant passages were given"
    assert PASSWORD in draft.cited
    assert SHIPPING not in draft.cited, "nothing in it matches the ticket"
    for passage in PASSAGES:
        quoted = sentences_in(draft.text, [passage])
        if passage in draft.cited:
            assert quoted, f"{passage.title} cited but not quoted"
        else:
            assert not quoted, f"{passage.title} quoted but not cited: {quoted}"
    assert list(draft.cited) == [p for p in PASSAGES if p in draft.cited], "retrieval order"


def test_extractive_concise_is_shorter_and_uses_fewer_passages(extractive):
    concise = extractive.invoke(DraftInput(TICKET, PASSAGES, CONCISE))
    detailed = extractive.invoke(DraftInput(TICKET, PASSAGES, DETAILED))
    assert len(concise.cited) <= CONCISE.max_passages
    assert set(concise.cited) <= set(PASSAGES[: CONCISE.max_passages])
    assert len(detailed.cited) > len(concise.cited)
    concise_sentences = sentences_in(concise.text, PASSAGES)
    detailed_sentences = sentences_in(detailed.text, PASSAGES)
    assert 0 < len(concise_sentences) <= CONCISE.max_sentences
    assert len(concise_sentences) < len(detailed_sentences) <= DETAILED.max_sentences
    assert len(concise.text) < len(detailed.text)


def test_extractive_concise_never_reads_past_its_passage_budget(extractive):
    # only the third passage matches the ticket; concise may read the first two only
    off_topic = (SHIPPING, chunk(51, 5, "Gift cards", "Gift cards work on any order."), PASSWORD)
    concise = extractive.invoke(DraftInput(TICKET, off_topic, CONCISE))
    detailed = extractive.invoke(DraftInput(TICKET, off_topic, DETAILED))
    assert PASSWORD not in concise.cited
    assert not sentences_in(concise.text, [PASSWORD])
    assert detailed.cited == (PASSWORD,)


def test_extractive_strips_markdown(extractive):
    draft = extractive.invoke(DraftInput(TICKET, PASSAGES, DETAILED))
    assert "**" not in draft.text
    assert "Forgot password" in draft.text
    assert not any(line.lstrip().startswith("#") for line in draft.text.splitlines())
    assert "If the email is missing" not in draft.text, "headings are left out"
    assert "Sign-in codes" not in draft.text


def test_extractive_without_passages_says_it_found_nothing(extractive):
    draft = extractive.invoke(DraftInput(TICKET, (), DETAILED))
    assert draft.cited == ()
    assert "could not find an article" in draft.text
    assert draft.text.startswith(prompt_file("greeting.txt").format(subject=TICKET.subject))
    assert draft.text.endswith(prompt_file("closing.txt"))


# --- pipeline on the database -------------------------------------------------------------


@pytest.fixture
def sample_db(db):
    """``db`` with the sample KB (see ``database_url`` above)."""
    with db.connection() as conn:
        (documents,) = conn.execute("SELECT count(*) FROM kb_documents").fetchone()
    assert documents == 60
    return db


def password_ticket(external_id: str | None) -> Ticket:
    return Ticket(
        subject="Password reset email never shows up",
        body="I clicked Forgot password three times but no email is coming. Do the links expire?",
        external_id=external_id,
    )


def test_pipeline_champion_and_challenger_swap_slots_by_ticket(settings, sample_db, tmp_path):
    challenger_answer = "Please use the reset link in the email [1]."
    with FakeOpenAI(challenger_answer) as server:
        challenger = openai_drafter(tmp_path, server.base_url)
        pipe = factory.pipeline(settings, sample_db, challenger=challenger)

        first = pipe.draft(password_ticket("SAMPLE-0"))
        assert [d.label for d in first.drafts] == ["A", "B"]
        by_role = {d.producer["role"]: d for d in first.drafts}
        assert set(by_role) == {"champion", "challenger"}
        champion, rival = by_role["champion"], by_role["challenger"]
        assert champion.producer["backend"] == "extractive"
        assert rival.producer["backend"] == "openai"
        assert rival.text == challenger_answer
        assert rival.citations == (first.context[0],)
        assert champion.citations and set(champion.citations) <= set(first.context)
        for draft in first.drafts:
            assert draft.producer["reranker"] == "cosine"
            assert draft.producer["variant"] == "concise"
        assert "reset-your-password" in first.context[0].external_id

        orders = {}
        for i in range(20):
            ticket_id = f"SAMPLE-{i}"
            roles = tuple(d.producer["role"] for d in pipe.draft(password_ticket(ticket_id)).drafts)
            orders[ticket_id] = roles
        assert set(orders.values()) == {("champion", "challenger"), ("challenger", "champion")}
        for ticket_id in ("SAMPLE-1", "SAMPLE-2", "SAMPLE-3"):
            again = tuple(d.producer["role"] for d in pipe.draft(password_ticket(ticket_id)).drafts)
            assert again == orders[ticket_id], "a retried ticket keeps its slot order"
    assert len(server.requests) == 1 + 20 + 3, "the challenger drafted every ticket once"


def test_pipeline_without_challenger_drafts_two_variants(settings, sample_db):
    pipe = factory.pipeline(settings, sample_db)
    result = pipe.draft(password_ticket("SAMPLE-1001"))
    a, b = result.drafts
    assert (a.label, b.label) == ("A", "B")
    assert a.producer["role"] == b.producer["role"] == "variant"
    assert (a.producer["variant"], b.producer["variant"]) == ("concise", "detailed")
    assert a.producer["backend"] == b.producer["backend"] == "extractive"
    assert a.text != b.text
    assert len(a.text) < len(b.text)
    assert len(result.context) == settings.context_k
    assert len(result.retrieved) == settings.retrieve_k
    for draft in result.drafts:
        assert draft.citations and set(draft.citations) <= set(result.context)
        assert draft.producer["retrieve_k"] == settings.retrieve_k
        assert draft.producer["context_k"] == settings.context_k
        assert draft.producer["embedding_version"]
    assert set(result.timings_ms) == {"retrieve", "rerank", "generate", "total"}
    # slot order does not depend on the ticket when both slots are variants
    other = pipe.draft(password_ticket("SAMPLE-1"))
    assert [d.producer["variant"] for d in other.drafts] == ["concise", "detailed"]


def test_pipeline_variant_temperatures_come_from_settings(settings, sample_db, tmp_path):
    with FakeOpenAI(lambda body: Reply(f"t={body['temperature']}")) as server:
        llm_settings = make_settings(
            settings.database_url,
            tmp_path,
            generator="openai",
            openai_base_url=server.base_url,
            draft_a_temperature=0.1,
            draft_b_temperature=1.3,
        )
        result = factory.pipeline(llm_settings, sample_db).draft(password_ticket("SAMPLE-9"))
    assert [d.text for d in result.drafts] == ["t=0.1", "t=1.3"]
    assert sorted(r["temperature"] for r in server.requests) == [0.1, 1.3]
    assert [d.producer["temperature"] for d in result.drafts] == [0.1, 1.3]
    assert [d.producer["variant"] for d in result.drafts] == ["concise", "detailed"]
