"""Second-stage ranking: cosine order by default, a local cross-encoder when configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag import exceptions, factory
from rag.models import RetrievedChunk, Ticket
from rag.rerank import CosineOrder, CrossEncoderReranker, blend
from tests.conftest import clone_database, drop_database, make_settings
from tests.support.chunks import make_chunk
from tests.support.tiny_models import build_cross_encoder

QUERY = "Password reset email never arrives\nI asked for a reset link but nothing came."


@pytest.fixture(scope="session")
def cross_encoder_dir(minilm_path, tmp_path_factory) -> Path:
    return build_cross_encoder(minilm_path, tmp_path_factory.mktemp("cross-encoder") / "model")


@pytest.fixture
def database_url(pg_server_url, samples_template_url):
    """Overrides conftest's empty database: here ``settings``/``db`` hold the sample KB."""
    url = clone_database(pg_server_url, samples_template_url)
    yield url
    drop_database(pg_server_url, url)


def chunk(chunk_id: int, title: str, text: str, similarity: float) -> RetrievedChunk:
    return make_chunk(chunk_id, chunk_id, title, text, similarity)


CHUNKS = [
    chunk(1, "Shipping to Canada", "We ship to Canada and Mexico.", 0.41),
    chunk(2, "Reset your password", "Tap Forgot password; the link expires in 24 hours.", 0.83),
    chunk(3, "Gift cards", "Gift cards work on any order.", 0.12),
    chunk(4, "Two-factor authentication", "Use a backup code if you lost your phone.", 0.67),
    chunk(5, "Account email", "Reset emails go to your account email.", 0.67),
]


def test_cosine_order_sorts_by_similarity_and_keeps_chunks():
    ranked = CosineOrder().rerank(QUERY, CHUNKS)
    assert [c.chunk_id for c in ranked] == [2, 4, 5, 1, 3], "ties keep retrieval order"
    assert all(c.rerank_score is None for c in ranked)
    assert [c.score for c in ranked] == [c.similarity for c in ranked]
    assert sorted(ranked, key=lambda c: c.chunk_id) == CHUNKS
    assert CosineOrder().rerank(QUERY, []) == []
    assert CosineOrder.name == "cosine"


def z(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return (array - array.mean()) / array.std()


def test_blend_mixes_z_scores_and_weight_zero_is_the_cross_encoder_alone():
    scores, cosines = [4.0, 1.0, 2.5], [0.2, 0.9, 0.5]
    assert blend(scores, cosines, 0.0) == pytest.approx(list(z(scores)))
    assert blend(scores, cosines, 0.5) == pytest.approx(list(z(scores) + 0.5 * z(cosines)))
    # the scales do not matter, only how far each candidate stands from the others
    assert blend([s * 100 - 7 for s in scores], cosines, 1.0) == pytest.approx(
        blend(scores, cosines, 1.0)
    )
    # a near tie of the cross-encoder is settled by the retriever
    tie = blend([2.0, 1.95, -5.0], [0.4, 0.9, 0.1], 1.0)
    assert tie[1] > tie[0] > tie[2]
    # a heavy cosine weight gives the retriever's order back
    heavy = blend(scores, cosines, 1000.0)
    assert sorted(range(3), key=lambda i: -heavy[i]) == [1, 2, 0]


def test_blend_with_nothing_to_tell_apart_is_flat():
    assert blend([3.0], [0.7], 1.0) == [0.0]
    assert blend([], [], 1.0) == []
    assert blend([1.0, 1.0], [0.3, 0.6], 0.0) == [0.0, 0.0]
    assert blend([1.0, 1.0], [0.3, 0.6], 1.0) == pytest.approx([-1.0, 1.0])


def test_cross_encoder_scores_every_chunk_and_blends_the_cosine(cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(str(cross_encoder_dir), cosine_weight=0.0)
    assert reranker.name == f"cross-encoder:{cross_encoder_dir.resolve()}"

    # what the model itself says about each (query, passage) pair
    model = CrossEncoder(str(cross_encoder_dir), device="cpu", local_files_only=True)
    expected = model.predict(
        [(QUERY, f"{c.title}\n{c.text}") for c in CHUNKS],
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    by_id = {c.chunk_id: float(s) for c, s in zip(CHUNKS, expected, strict=True)}
    assert len(set(by_id.values())) == len(CHUNKS), "distinct scores make the order testable"

    # make the cosine order the reverse of the cross-encoder's, so reranking must change it
    worst_first = sorted(CHUNKS, key=lambda c: by_id[c.chunk_id])
    given = [
        RetrievedChunk(**{**c.__dict__, "similarity": 0.9 - 0.1 * i})
        for i, c in enumerate(worst_first)
    ]
    cosine = [c.chunk_id for c in CosineOrder().rerank(QUERY, given)]
    assert cosine == [c.chunk_id for c in worst_first]

    # weight 0: the cross-encoder's order, its scores z-scored over the candidates
    ranked = reranker.rerank(QUERY, given)
    assert sorted(c.chunk_id for c in ranked) == [c.chunk_id for c in CHUNKS]
    assert [c.chunk_id for c in ranked] == cosine[::-1]
    ids = [c.chunk_id for c in given]
    wanted = dict(zip(ids, z([by_id[c] for c in ids]), strict=True))
    for c in ranked:
        assert c.rerank_score == pytest.approx(wanted[c.chunk_id], abs=1e-5)
        assert c.score == c.rerank_score

    # the default blends the retriever's cosine in, as the setting says
    blended = CrossEncoderReranker(str(cross_encoder_dir)).rerank(QUERY, given)
    mixed = z([by_id[c.chunk_id] for c in given]) + z([c.similarity for c in given])
    wanted = dict(zip(ids, mixed, strict=True))
    assert [c.rerank_score for c in blended] == pytest.approx(
        sorted(wanted.values(), reverse=True), abs=1e-5
    )
    assert [wanted[c.chunk_id] for c in blended] == pytest.approx(
        [c.rerank_score for c in blended], abs=1e-5
    )
    assert all(c.rerank_score is None for c in given), "input chunks are not modified"
    assert reranker.rerank(QUERY, []) == []


def test_pipeline_with_cross_encoder_reranks_the_context(settings, db, cross_encoder_dir, tmp_path):
    ranked_settings = make_settings(
        settings.database_url,
        tmp_path,
        reranker_model=str(cross_encoder_dir),
        retrieve_k=8,
        context_k=3,
    )
    assert isinstance(factory.reranker(ranked_settings), CrossEncoderReranker)
    assert factory.reranker(ranked_settings).cosine_weight == 1.0
    heavier = ranked_settings.model_copy(update={"reranker_cosine_weight": 2.5})
    assert factory.reranker(heavier).cosine_weight == 2.5
    pipe = factory.pipeline(ranked_settings, db)
    result = pipe.draft(
        Ticket(
            subject="Password reset email never shows up",
            body="I clicked Forgot password three times but no email is coming.",
            external_id="SAMPLE-1001",
        )
    )

    assert len(result.retrieved) == 8
    assert len(result.context) == 3
    assert all(c.rerank_score is None for c in result.retrieved)
    scores = [c.rerank_score for c in result.context]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    retrieved_ids = [c.chunk_id for c in result.retrieved]
    assert {c.chunk_id for c in result.context} <= set(retrieved_ids)

    # the context is the cross-encoder's top 3 of everything retrieved
    everything = CrossEncoderReranker(str(cross_encoder_dir)).rerank(
        Ticket(
            subject="Password reset email never shows up",
            body="I clicked Forgot password three times but no email is coming.",
        ).query_text(),
        result.retrieved,
    )
    assert [c.chunk_id for c in result.context] == [c.chunk_id for c in everything[:3]]

    for draft in result.drafts:
        assert draft.producer["reranker"] == f"cross-encoder:{cross_encoder_dir.resolve()}"
        assert draft.producer["context_k"] == 3 and draft.producer["retrieve_k"] == 8
        assert {c.chunk_id for c in draft.citations} <= {c.chunk_id for c in result.context}
    assert "rerank" in result.timings_ms


def test_missing_cross_encoder_path_is_model_not_found(tmp_path):
    missing = tmp_path / "no-such-cross-encoder"
    with pytest.raises(exceptions.ModelNotFound, match="AITL_RERANKER_MODEL"):
        CrossEncoderReranker(str(missing))
    settings = make_settings(None, tmp_path, reranker_model=str(missing))
    with pytest.raises(exceptions.ModelNotFound, match="AITL_RERANKER_MODEL") as caught:
        factory.reranker(settings)
    assert str(missing) in str(caught.value)
    assert isinstance(factory.reranker(make_settings(None, tmp_path)), CosineOrder)
