"""Builds the knowledge-base services and the draft pipeline from Settings."""

from __future__ import annotations

from langchain_core.runnables import Runnable

from aitl.core.db import Database
from aitl.core.settings import Settings
from rag.chunking import Chunker
from rag.extractive import ExtractiveDrafter
from rag.generation import CONCISE, DETAILED, DraftInput, DraftVariant, GeneratedDraft
from rag.ingest import Ingestor
from rag.llm_backends import HuggingFaceDrafter, OpenAIDrafter
from rag.pipeline import DraftMaker, DraftPipeline
from rag.prompts import PromptLibrary
from rag.rerank import CosineOrder, CrossEncoderReranker, Reranker
from rag.retrieve import Retriever
from rag.versions import EmbeddingVersions, IndexSettings


def embedding_versions(settings: Settings, db: Database) -> EmbeddingVersions:
    return EmbeddingVersions(
        db,
        IndexSettings(
            embedding_model=settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
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
    prompts = PromptLibrary(settings.prompts_dir)
    if settings.generator == "openai":
        return OpenAIDrafter(
            prompts,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_s=settings.openai_timeout_s,
            max_tokens=settings.generation_max_new_tokens,
        )
    if settings.generator == "hf":
        return HuggingFaceDrafter(
            prompts,
            model_path=settings.hf_model_path,
            adapter_path=settings.hf_adapter_path,
            max_new_tokens=settings.generation_max_new_tokens,
        )
    return ExtractiveDrafter(prompts)


def reranker(settings: Settings) -> Reranker:
    if settings.reranker_model:
        return CrossEncoderReranker(
            settings.reranker_model, cosine_weight=settings.reranker_cosine_weight
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
    challenger: Runnable[DraftInput, GeneratedDraft] | None = None,
    versions: EmbeddingVersions | None = None,
) -> DraftPipeline:
    """A/B are champion vs challenger when a challenger exists, else two generation settings."""
    champion = generator(settings)
    first, second = variants(settings)
    if challenger is not None:
        makers = (
            DraftMaker(champion, first, "champion"),
            DraftMaker(challenger, first, "challenger"),
        )
    else:
        makers = (DraftMaker(champion, first, "variant"), DraftMaker(champion, second, "variant"))
    retriever = Retriever(
        db, versions or embedding_versions(settings, db), ef_search=settings.hnsw_ef_search
    )
    return DraftPipeline(
        retriever,
        reranker(settings),
        makers,
        retrieve_k=settings.retrieve_k,
        context_k=settings.context_k,
    )
