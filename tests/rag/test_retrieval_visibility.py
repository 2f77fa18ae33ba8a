"""Who may see what a draft is made from: retrieval restricted to the ticket's brand (also on
the filtered HNSW path), the requester's language preferred, and agent-only (internal)
articles kept out of every draft's text while the draft set still records them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from langchain_core.runnables import RunnableLambda

from aitl.core.bootstrap import open_database
from rag import factory, store
from rag.extractive import sentences
from rag.generation import DraftInput, GeneratedDraft
from rag.models import SourceDocument, Ticket
from tests.conftest import create_database, drop_database, make_settings

NOW = datetime(2026, 11, 22, tzinfo=UTC)
PASSWORD_QUERY = "I forgot my password and the password reset email never arrives"


def doc(external_id: str, title: str, body: str, **fields) -> SourceDocument:
    return SourceDocument("tests", external_id, title, body, NOW, **fields)


@pytest.fixture(scope="module")
def kb_of(pg_server_url, template_url, tmp_path_factory):
    """A fresh database per group of tests, holding only the documents given (ingested once)."""
    made = []

    def build(documents: list[SourceDocument], **overrides):
        url = create_database(pg_server_url)
        made.append(url)
        settings = make_settings(url, tmp_path_factory.mktemp("kb"), **overrides)
        database = open_database(settings)
        factory.ingestor(settings, database).ingest(documents, source="tests")
        database.close()
        return settings

    yield build
    for url in made:
        drop_database(pg_server_url, url)


@pytest.fixture
def opened(request) -> Iterator:
    databases = []

    def open_(settings):
        databases.append(open_database(settings))
        return databases[-1]

    yield open_
    for database in databases:
        database.close()


# --- brands ---------------------------------------------------------------------------------

GLOBEX = [
    doc(
        f"globex-{i}",
        f"Globex password reset, case {i}",
        f"If the password reset email never arrives (case {i}), check the spam folder, wait "
        f"{i + 2} minutes and ask for a new reset link from the Globex sign-in page.",
        brand="globex",
    )
    for i in range(60)
]
ACME = [
    doc(
        f"acme-{i}",
        f"Acme account access {i}",
        f"Acme customers who forgot a password open acme.example/help step {i} and choose "
        "Recover account; the recovery message comes from no-reply@acme.example.",
        brand="acme",
    )
    for i in range(4)
]
EVERY_BRAND = doc(
    "shared-security",
    "Security tips for every account",
    "Use a password manager and never share a one-time code with anyone who calls you.",
)


@pytest.fixture(scope="module")
def brands_kb(kb_of):
    return kb_of([*GLOBEX, *ACME, EVERY_BRAND])


def test_a_brand_rare_among_the_nearest_still_gets_k_of_its_own_on_the_hnsw_path(brands_kb, opened):
    db = opened(brands_kb)
    version, embedder = factory.embedding_versions(brands_kb, db).live()
    query = embedder.encode([PASSWORD_QUERY])[0]
    with db.connection() as conn:
        # the HNSW index, as on a large knowledge base (here a sort would be cheaper), with a
        # candidate list of k: without an iterative scan, the filter keeps what is left of it
        conn.execute("SET LOCAL enable_sort = off")
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = store.explain_search(conn, version, query, brand="acme")
        nearest = store.search(conn, version, query, k=5, ef_search=5)
        acme = store.search(conn, version, query, k=5, ef_search=5, brand="acme")
    assert store.index_name(version.version) in plan and "brand" in plan
    assert sum(h.external_id.startswith("acme-") for h in nearest) <= 1, "globex dominates"
    assert len(acme) == 5
    assert {h.external_id for h in acme} == {d.external_id for d in [*ACME, EVERY_BRAND]}
    assert [h.similarity for h in acme] == sorted((h.similarity for h in acme), reverse=True)


def test_exact_search_keeps_the_brand_filter_and_no_brand_means_every_document(brands_kb, opened):
    retriever = factory.pipeline(brands_kb, opened(brands_kb)).retriever
    exact = retriever.search(PASSWORD_QUERY, 8, exact=True, brand="acme")
    assert {h.external_id for h in exact} == {d.external_id for d in [*ACME, EVERY_BRAND]}
    everything = retriever.search(PASSWORD_QUERY, 8)
    assert any(h.external_id.startswith("globex-") for h in everything)


def test_sharing_knowledge_across_brands_lifts_the_filter(brands_kb, opened):
    shared = make_settings(
        brands_kb.database_url.get_secret_value(),
        brands_kb.data_dir,
        kb_share_across_brands=True,
    )
    retriever = factory.pipeline(shared, opened(shared)).retriever
    found = retriever.search(PASSWORD_QUERY, 5, brand="acme")
    unfiltered = retriever.search(PASSWORD_QUERY, 5)
    assert [h.chunk_id for h in found] == [h.chunk_id for h in unfiltered]
    assert any(h.external_id.startswith("globex-") for h in found)


def test_a_tickets_drafts_come_from_its_own_brand(brands_kb, opened):
    pipeline = factory.pipeline(brands_kb, opened(brands_kb))
    ticket = Ticket("Locked out", PASSWORD_QUERY, external_id="T-acme", brand="acme")
    result = pipeline.draft(ticket)
    allowed = {d.external_id for d in [*ACME, EVERY_BRAND]}
    assert result.retrieved and {h.external_id for h in result.retrieved} <= allowed
    cited = {c.external_id for d in result.drafts for c in d.citations}
    assert cited and cited <= allowed
    assert "Globex" not in " ".join(d.text for d in result.drafts)


# --- locales --------------------------------------------------------------------------------

RESET_EN = doc(
    "reset-en",
    "Reset your password",
    "To reset your password, open the sign-in page and choose Forgot password. The reset "
    "email arrives within five minutes.",
    locale="en-us",
    metadata={"article_id": "100"},
)
RESET_DE = doc(
    "reset-de",
    "Passwort zurücksetzen",
    "Um Ihr Passwort zurückzusetzen, öffnen Sie die Anmeldeseite und wählen Sie Passwort "
    "vergessen (password reset). Die E-Mail kommt innerhalb von fünf Minuten.",
    locale="de",
    metadata={"article_id": "100"},
)
INVOICE_DE = doc(
    "invoice-de",
    "Rechnung herunterladen",
    "Ihre Rechnung finden Sie im Kundenkonto unter Bestellungen.",
    locale="de-ch",
    metadata={"article_id": "300"},
)
CANCEL_EN = doc(
    "cancel-en",
    "Cancel your subscription",
    "You can cancel your subscription at any time from the account page.",
    locale="en-us",
    metadata={"article_id": "200"},
)
ADDRESS_EN = doc(
    "address-en",
    "Change your password reminder email address",
    "Password reset emails go to the address on your account; change it under Profile.",
    locale="en-us",
    metadata={"article_id": "400"},
)
ADDRESS_FR = doc(
    "address-fr",
    "Changer l'adresse e-mail de réinitialisation",
    "Les e-mails de réinitialisation du password vont à l'adresse de votre compte.",
    locale="fr",
    metadata={"article_id": "400"},
)


@pytest.fixture(scope="module")
def locales_kb(kb_of):
    return kb_of([RESET_EN, RESET_DE, INVOICE_DE, CANCEL_EN, ADDRESS_EN, ADDRESS_FR])


def test_a_translation_in_the_requesters_language_replaces_its_original(locales_kb, opened):
    retriever = factory.pipeline(locales_kb, opened(locales_kb)).retriever
    anyone = [h.external_id for h in retriever.search("reset my password", 6)]
    assert "reset-en" in anyone and "reset-de" in anyone, "both translations are near"

    german = retriever.search("reset my password", 6, locale="de-CH")
    ids = [h.external_id for h in german]
    # "de" and "de-ch" are one language: the German version of article 100 stands in for the
    # English original; of article 400, found only in English and French, one version stays;
    # articles with no German version (200) are still candidates: preferred, not imposed
    assert "reset-de" in ids and "reset-en" not in ids
    assert "invoice-de" in ids and "cancel-en" in ids
    assert len({"address-en", "address-fr"} & set(ids)) == 1
    assert len(ids) == 4
    similarities = [h.similarity for h in german]
    assert similarities == sorted(similarities, reverse=True)  # nearest first, as ever

    three = [h.external_id for h in retriever.search("reset my password", 3, locale="de")]
    assert len(three) == 3 and "reset-de" in three and "reset-en" not in three


def test_without_a_locale_every_translation_stays_a_candidate(locales_kb, opened):
    retriever = factory.pipeline(locales_kb, opened(locales_kb)).retriever
    ids = {h.external_id for h in retriever.search("password reset email", 6)}
    assert {"reset-en", "reset-de", "address-en", "address-fr"} <= ids


def test_the_pipeline_drafts_from_the_requesters_language(locales_kb, opened):
    pipeline = factory.pipeline(locales_kb, opened(locales_kb))
    result = pipeline.draft(Ticket("Passwort", "reset my password", locale="de"))
    ids = [h.external_id for h in result.retrieved]
    assert "reset-de" in ids and "reset-en" not in ids


# --- internal (agent-only) articles ---------------------------------------------------------

REFUND = doc(
    "refund-policy",
    "Refund times",
    "Refunds reach your card within ten business days after we receive the returned item. "
    "You will get an email as soon as the refund is issued.",
)
GOODWILL = doc(
    "goodwill-credit",
    "Internal: how to issue a goodwill credit",
    "When a refund is more than ten days late, agents may issue a goodwill credit of fifteen "
    "dollars to the customer. Open the billing console, pick the late refund and press Issue "
    "credit before you reply to the customer about the late refund.",
    audience="internal",
)
LATE_REFUND = Ticket(
    "Late refund",
    "My refund is more than ten days late. Can you issue a goodwill credit for the late refund?",
    external_id="T-refund",
)


@pytest.fixture(scope="module")
def internal_kb(kb_of):
    return kb_of([REFUND, GOODWILL])


def test_an_internal_article_is_in_the_context_but_never_in_a_drafts_text_or_citations(
    internal_kb, opened
):
    db = opened(internal_kb)
    result = factory.pipeline(internal_kb, db).draft(LATE_REFUND)
    internal = [c for c in result.context if c.external_id == "goodwill-credit"]
    assert internal and internal[0].audience == "internal", "the agent still sees it"
    goodwill_sentences = [s for line in GOODWILL.body.splitlines() for s in sentences(line)]
    for draft in result.drafts:
        assert all(c.audience == "public" for c in draft.citations)
        assert draft.citations, "the public article is still quoted"
        for sentence in goodwill_sentences:
            assert sentence not in draft.text
        assert "billing console" not in draft.text and "fifteen" not in draft.text

    with db.connection() as conn:
        set_id = store.save_draft_set(conn, "tests:T-refund", "late refund", result)
        context, retrieved = conn.execute(
            "SELECT context, retrieved FROM rag_draft_sets WHERE id = %s", (set_id,)
        ).fetchone()
        refs = store.context_refs(conn, set_id)
    assert context == [c.chunk_id for c in result.context]
    assert internal[0].chunk_id in context
    assert [set(r) for r in retrieved] == [{"chunk_id", "similarity", "rerank_score"}] * len(
        result.retrieved
    )
    assert [(r.chunk_id, r.audience) for r in refs] == [
        (c.chunk_id, c.audience) for c in result.context
    ]


def test_no_generator_is_given_an_internal_passage(internal_kb, opened):
    """The boundary every backend (extractive, local LLM, OpenAI-compatible) drafts behind."""
    given: list[DraftInput] = []

    def generate(request: DraftInput) -> GeneratedDraft:
        given.append(request)
        return GeneratedDraft("Hi there,\n\nThanks.", request.passages[:1], {"backend": "test"})

    pipeline = factory.pipeline(internal_kb, opened(internal_kb), champion=RunnableLambda(generate))
    result = pipeline.draft(LATE_REFUND)
    assert any(c.audience == "internal" for c in result.context)
    assert len(given) == 2
    for request in given:
        assert request.passages and {p.audience for p in request.passages} == {"public"}
