"""Builds the knowledge-base services and the draft pipeline from Settings."""

from __future__ import annotations

from pathlib import Path

from langchain_core.runnables import Runnable

from aitl.core.db import Database
from aitl.core.settings import Settings
from rag import encoders, shipped_llm
from rag.chunking import Chunker
from rag.embedding import Embedder
from rag.extractive import ExtractiveDrafter
from rag.generation import CONCISE, DETAILED, DraftInput, DraftVariant, GeneratedDraft
from rag.ingest import Ingestor
from rag.llm_backends import HuggingFaceDrafter, LocalDecoding, OpenAIDrafter
from rag.lora_serving import RuntimeAdapters
from rag.memory import FeedbackMemory
from rag.pipeline import DraftMaker, DraftPipeline
from rag.prompts import PromptLibrary
from rag.rerank import CosineOrder, CrossEncoderReranker, Reranker
from rag.retrieve import Retriever
from rag.versions import EmbeddingVersions, IndexSettings


def encoder_backend(settings: Settings) -> encoders.BackendSettings:
    """Where the embedding model and the reranker run (``AITL_ENCODER_BACKEND``)."""
    return encoders.BackendSettings(
        settings.encoder_backend, settings.exports_dir, threads=settings.torch_threads
    )


def embedder(settings: Settings, path: str | None = None) -> Embedder:
    """The embedding model of the settings (or another folder), on the configured backend."""
    return Embedder(
        path or settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        backend=encoder_backend(settings),
    )


def embedding_versions(settings: Settings, db: Database) -> EmbeddingVersions:
    return EmbeddingVersions(
        db,
        IndexSettings(
            embedding_model=settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            backend=encoder_backend(settings),
        ),
    )


def ingestor(
    settings: Settings, db: Database, versions: EmbeddingVersions | None = None
) -> Ingestor:
    return Ingestor(
        db,
        versions or embedding_versions(settings, db),
        Chunker(settings.chunk_size, settings.chunk_overlap),
    )


def generator(settings: Settings) -> Runnable[DraftInput, GeneratedDraft]:
    """The champion drafter named by AITL_GENERATOR (before any promotion)."""
    if settings.generator == "openai":
        return openai_drafter(settings, settings.openai_model)
    if settings.generator == "hf":
        return local_drafter(settings, settings.hf_adapter_path)
    return ExtractiveDrafter(PromptLibrary(settings.prompts_dir))


SHIPPED_LLM = "llm-base"  # the drafting LLM without an adapter, as duels and the registry name it


def shipped_generator_name(settings: Settings) -> str:
    """The drafter AITL_GENERATOR names, as duels count it: "extractive", or the LLM."""
    return "extractive" if settings.generator == "extractive" else SHIPPED_LLM


def llm_backend(settings: Settings) -> str | None:
    """The backend that serves the drafting LLM and the adapters a cycle trains for it:
    AITL_GENERATOR when it names one, else the local LLM as challenger (None: no LLM)."""
    if settings.generator in ("hf", "openai"):
        return settings.generator
    return "hf" if settings.llm_challenger else None


def llm_model_path(settings: Settings) -> Path:
    """AITL_HF_MODEL_PATH, or the shipped SmolLM2 (converted on first use)."""
    return settings.hf_model_path or shipped_llm.prepared(settings.models_dir)


def local_drafter(
    settings: Settings, adapter: Path | None, *, label: str | None = None
) -> HuggingFaceDrafter:
    return HuggingFaceDrafter(
        PromptLibrary(settings.prompts_dir),
        model_path=llm_model_path(settings),
        adapter_path=adapter,
        decoding=LocalDecoding(
            max_new_tokens=settings.hf_max_new_tokens,
            copy_bias=settings.hf_copy_bias,
            repetition_penalty=settings.hf_repetition_penalty,
            no_repeat_ngram_size=settings.hf_no_repeat_ngram,
        ),
        label=label,
    )


def openai_drafter(settings: Settings, model: str) -> OpenAIDrafter:
    return OpenAIDrafter(
        PromptLibrary(settings.prompts_dir),
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=model,
        timeout_s=settings.openai_timeout_s,
        max_tokens=settings.generation_max_new_tokens,
    )


def llm_drafter(
    settings: Settings, adapter: Path | None = None, *, label: str | None = None
) -> Runnable[DraftInput, GeneratedDraft]:
    """The drafting LLM with ``adapter`` (a trained LoRA) or without, on its backend.

    On "openai" (vLLM) the adapter is loaded into the server at run time and drafts name it,
    ``label`` (else the folder's name), as their model: see ``rag.lora_serving``.
    """
    if llm_backend(settings) == "openai":
        if adapter is None:
            return openai_drafter(settings, settings.openai_model)
        name = label or adapter.name
        runtime_adapters(settings).ensure_loaded(name, adapter)
        return openai_drafter(settings, name)
    return local_drafter(settings, adapter, label=label)


def runtime_adapters(settings: Settings) -> RuntimeAdapters:
    """The vLLM server's runtime LoRA API, at AITL_OPENAI_BASE_URL."""
    return RuntimeAdapters(
        settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        timeout_s=settings.openai_timeout_s,
        models_dir=settings.models_dir,
        lora_root=settings.openai_lora_root,
    )


def reranker(settings: Settings) -> Reranker:
    if settings.reranker_model:
        return CrossEncoderReranker(
            settings.reranker_model,
            cosine_weight=settings.reranker_cosine_weight,
            backend=encoder_backend(settings),
        )
    return CosineOrder()


def variants(settings: Settings) -> tuple[DraftVariant, DraftVariant]:
    """The two generation settings used when no challenger model exists."""
    return (
        DraftVariant(**{**CONCISE.__dict__, "temperature": settings.draft_a_temperature}),
        DraftVariant(**{**DETAILED.__dict__, "temperature": settings.draft_b_temperature}),
    )


def pipeline(
    settings: Settings,
    db: Database,
    *,
    champion: Runnable[DraftInput, GeneratedDraft] | None = None,
    challenger: Runnable[DraftInput, GeneratedDraft] | None = None,
    versions: EmbeddingVersions | None = None,
    names: tuple[str, str] | None = None,
    memory: FeedbackMemory | None = None,
) -> DraftPipeline:
    """A/B are champion vs challenger when a challenger exists (on AITL_CHALLENGER_SHARE of
    the tickets), else the champion's two generation settings. ``names`` (champion,
    challenger) are recorded on each draft, so the online duel knows who drafted it.
    ``memory``: the feedback memory that steers retrieval (left out when AITL_MEMORY_ENABLED
    is off)."""
    champion_name, challenger_name = names or (shipped_generator_name(settings), "")
    champion = champion or generator(settings)
    first, second = variants(settings)
    styles = (
        DraftMaker(champion, first, "variant", champion_name),
        DraftMaker(champion, second, "variant", champion_name),
    )
    contest = None
    if challenger is not None and settings.challenger_share > 0:
        contest = (
            DraftMaker(champion, first, "champion", champion_name),
            DraftMaker(challenger, first, "challenger", challenger_name),
        )
    retriever = Retriever(
        db,
        versions or embedding_versions(settings, db),
        ef_search=settings.hnsw_ef_search,
        share_across_brands=settings.kb_share_across_brands,
    )
    return DraftPipeline(
        retriever,
        reranker(settings),
        contest or styles,
        styles=styles if contest else None,
        challenger_share=settings.challenger_share,
        retrieve_k=settings.retrieve_k,
        context_k=settings.context_k,
        memory=memory if settings.memory_enabled else None,
        memory_weight=settings.memory_weight,
    )
