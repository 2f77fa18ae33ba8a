"""The encoders' inference backends (rag.encoders): exported once, checked against torch float32,
interchangeable in one index, and never an error (or an export) when an agent waits."""

from __future__ import annotations

import logging
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from aitl.core.bootstrap import open_database
from aitl.core.settings import Settings
from rag import encoder_graphs, encoders, factory, store
from rag.embedding import Embedder
from rag.models import SourceDocument
from rag.rerank import CrossEncoderReranker
from tests.conftest import make_settings
from tests.support.chunks import make_chunk
from tests.support.tiny_models import build_cross_encoder

pytestmark = pytest.mark.slow

TEXTS = [
    "How do I reset my password?",
    "refund",
    "My parcel arrived broken and the box was open; I would like a replacement or my money "
    "back, whichever is faster, and I need it before the weekend because it is a gift.",
    "Our support team answers within one business day. Premium plans get a phone line open "
    "around the clock, and every plan can chat with us from the help menu in the app.",
    "Wifi?",
]
QUERIES = ["password reset link never came", "where is my refund", "do you ship abroad"]


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Path:
    """One exports folder for the session: each model is exported once, as in a data dir."""
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def cross_encoder(minilm_path, tmp_path_factory) -> Path:
    return build_cross_encoder(minilm_path, tmp_path_factory.mktemp("cross") / "model", seed=3)


def torch_vectors(path: Path) -> np.ndarray:
    return Embedder(path).encode(TEXTS)


def test_importing_the_backends_keeps_openvino_telemetry_off():
    import openvino  # noqa: F401  - importing it is what starts its telemetry
    from openvino.tools.ovc import convert_impl

    assert sys.modules["openvino_telemetry"] is None
    assert convert_impl.tm.__name__ == "openvino.tools.ovc.telemetry_stub"


def test_auto_keeps_the_fastest_backend_that_agrees_and_exports_it_once(minilm_path, exports):
    settings = encoders.BackendSettings("auto", exports)
    choice = encoders.prepare(minilm_path, "embedder", settings)

    tried = {t.backend: t for t in choice.trials}
    assert set(tried) == {"torch", *encoders.AUTO}  # every backend auto considers was measured
    chosen = tried[choice.backend]
    assert chosen.agrees and chosen.error is None
    faster = [t for t in tried.values() if t.agrees and t.texts_per_s > chosen.texts_per_s]
    assert not faster, "auto kept a slower backend than one that agrees"
    folder = encoder_graphs.exports_folder(exports, minilm_path)
    exported = [b for b in encoder_graphs.EXPORTED if (folder / b / "export.json").is_file()]
    assert exported == ([choice.backend] if choice.backend in encoder_graphs.EXPORTED else [])

    # a second prepare (another process starting) reads the decision: nothing is rebuilt
    def files() -> dict[Path, int]:
        found = [p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"]
        return {p: p.stat().st_mtime_ns for p in found}

    stamp = files()
    again = encoders.prepare(minilm_path, "embedder", settings)
    assert again.backend == choice.backend and again.decided_at == choice.decided_at
    assert files() == stamp

    embedder = Embedder(minilm_path, backend=settings)
    assert embedder.backend == choice.backend
    assert "agreement" in encoders.describe(minilm_path, "embedder", settings) or (
        choice.backend == "torch"
    )


@pytest.mark.parametrize("backend", ["torch-bf16", "onnx", "openvino"])
def test_every_backend_makes_vectors_the_torch_index_can_hold(minilm_path, tmp_path, backend):
    settings = encoders.BackendSettings(backend, tmp_path / "exports")
    embedder = Embedder(minilm_path, backend=settings)
    choice = embedder.prepare()
    assert choice.backend == backend and not choice.note

    reference = torch_vectors(minilm_path)
    vectors = embedder.encode(TEXTS)
    assert embedder.backend == backend
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() >= encoders.AGREEMENT, cosines
    # the same neighbours: each query finds the same text first on either side
    queries = embedder.encode(QUERIES)
    torch_queries = Embedder(minilm_path).encode(QUERIES)
    assert list(np.argmax(queries @ reference.T, axis=1)) == list(
        np.argmax(torch_queries @ reference.T, axis=1)
    )
    # order and batch size do not change a text's vector (length-sorted batches)
    one_by_one = np.stack([embedder.encode([t])[0] for t in TEXTS])
    assert np.sum(one_by_one * vectors, axis=1).min() > 0.9999


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_reranker_orders_alike_on_every_backend(cross_encoder, tmp_path, backend):
    chunks = [make_chunk(i, i, f"Article {i}", text) for i, text in enumerate(TEXTS)]
    on_torch = CrossEncoderReranker(str(cross_encoder)).rerank(QUERIES[0], chunks)
    reranker = CrossEncoderReranker(
        str(cross_encoder), backend=encoders.BackendSettings(backend, tmp_path / "exports")
    )
    choice = reranker.prepare()
    assert choice.backend == backend
    assert choice.trial(backend).agreement >= encoders.AGREEMENT
    on_backend = reranker.rerank(QUERIES[0], chunks)
    assert reranker.model.backend == backend
    assert [c.chunk_id for c in on_backend] == [c.chunk_id for c in on_torch]
    scores = reranker.model.score([(QUERIES[0], t) for t in TEXTS])  # sigmoid of the logits
    pairs = [(QUERIES[0], t) for t in TEXTS]
    reference = CrossEncoderReranker(str(cross_encoder)).model.score(pairs)
    assert np.abs(scores - reference).max() < 0.01


def test_loading_never_exports_and_serves_on_torch_with_a_warning(minilm_path, tmp_path, caplog):
    model = tmp_path / "model-never-prepared"  # its own path: the warning is once per model
    shutil.copytree(minilm_path, model)
    settings = encoders.BackendSettings("openvino", tmp_path / "exports")
    with caplog.at_level(logging.WARNING, logger="rag.encoders"):
        vectors = Embedder(model, backend=settings).encode(TEXTS)
    assert not (tmp_path / "exports").exists()  # nothing was exported at request time
    assert np.sum(vectors * torch_vectors(minilm_path), axis=1).min() > 0.99999
    assert "no current openvino export was prepared; torch float32 serves" in caplog.text
    assert "torch float32 for now" in encoders.describe(model, "embedder", settings)


def test_a_model_rewritten_in_place_makes_its_export_stale(minilm_path, tmp_path, caplog):
    model = tmp_path / "retriever"
    shutil.copytree(minilm_path, model)
    settings = encoders.BackendSettings("onnx", tmp_path / "exports")
    first = Embedder(model, backend=settings).prepare()
    assert first.backend == "onnx"
    assert encoders.recorded(model, "embedder", settings) is not None

    # a retrain writes new weights over the same folder: the export no longer matches them
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    assert encoders.recorded(model, "embedder", settings) is None
    with caplog.at_level(logging.WARNING, logger="rag.encoders"):
        assert Embedder(model, backend=settings).backend == "torch"
    assert "torch float32 serves" in caplog.text

    rebuilt = Embedder(model, backend=settings).prepare()
    assert rebuilt.source_key != first.source_key and rebuilt.backend == "onnx"
    assert Embedder(model, backend=settings).backend == "onnx"


def test_a_broken_export_is_no_error_for_the_agent(minilm_path, tmp_path, caplog):
    model = tmp_path / "retriever"
    shutil.copytree(minilm_path, model)
    settings = encoders.BackendSettings("openvino", tmp_path / "exports")
    Embedder(model, backend=settings).prepare()
    folder = encoder_graphs.exports_folder(tmp_path / "exports", model) / "openvino"
    (folder / "model.xml").write_text("<not a graph", encoding="utf-8")
    shutil.rmtree(folder / "cache", ignore_errors=True)

    fresh = Embedder(model, backend=settings)
    fresh.__dict__.pop("model", None)
    encoders._models.clear()  # a new process: nothing loaded yet
    with caplog.at_level(logging.WARNING, logger="rag.encoders"):
        vectors = fresh.encode(TEXTS)
    assert fresh.backend == "torch" and vectors.shape == (len(TEXTS), 384)
    assert "does not load" in caplog.text


def test_a_trained_model_is_tried_on_its_bases_backend_first(minilm_path, tmp_path):
    model = tmp_path / "trained"
    shutil.copytree(minilm_path, model)
    settings = encoders.BackendSettings("auto", tmp_path / "exports")
    choice = Embedder(model, backend=settings).prepare(prefer=["onnx"])
    assert choice.backend == "onnx"
    assert [t.backend for t in choice.trials] == ["torch", "onnx"]  # the others not timed


def test_an_unknown_backend_is_refused_where_it_is_set():
    with pytest.raises(ValidationError, match="encoder_backend"):
        Settings(_env_file=None, encoder_backend="tensorrt")
    with pytest.raises(encoders.exceptions.EncoderBackendError, match="tensorrt"):
        encoders.BackendSettings("tensorrt")


def test_an_index_built_on_torch_serves_queries_and_ingest_on_openvino(
    kb_settings, minilm_path, exports
):
    """The sample KB was ingested on torch; the same index then serves on another backend:
    the same chunks come back, and new documents join it, recorded as written by both."""
    db = open_database(kb_settings)
    try:
        on_torch = factory.pipeline(kb_settings, db).retriever
        torch_hits = {q: [c.chunk_id for c in on_torch.search(q, 5)] for q in QUERIES}
    finally:
        db.close()

    fast = make_settings(
        kb_settings.database_url,
        kb_settings.data_dir,
        encoder_backend="openvino",
        encoder_exports_dir=exports,
    )
    db = open_database(fast)
    try:
        pipeline = factory.pipeline(fast, db)
        pipeline.warm()  # start-up: exports the live model for the backend
        _, embedder = factory.embedding_versions(fast, db).live()
        assert embedder.backend == "openvino"
        retriever = pipeline.retriever
        for query, expected in torch_hits.items():
            found = [c.chunk_id for c in retriever.search(query, 5)]
            assert found[:3] == expected[:3], query
            assert len(set(found) & set(expected)) >= 4, query

        factory.ingestor(fast, db).ingest(
            [
                SourceDocument(
                    source="more",
                    external_id="gift-wrap",
                    title="Gift wrapping",
                    body="Gift wrapping costs 3 euros and includes a handwritten card.",
                    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
            ],
            source="more",
        )
        with db.connection() as conn:
            live = store.live_version(conn)
        assert live is not None and live.backends == ("torch", "openvino")
        assert retriever.search("can you wrap my present", 1)[0].title == "Gift wrapping"
        assert retriever.describe()["encoder_backend"] == "openvino"
    finally:
        db.close()
