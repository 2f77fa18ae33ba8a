"""Errors of the knowledge base and the draft pipeline.

RagError
├── DocumentError                 (a source file or record cannot be ingested)
│   ├── UnsupportedFileType
│   ├── EmptyDocument
│   ├── DocumentTooLarge
│   ├── UndecodableText
│   └── MalformedRecord
├── EmbeddingError
│   ├── ModelNotFound
│   ├── EmbeddingDimensionMismatch
│   ├── EmbeddingModelChanged
│   ├── NoLiveEmbeddingVersion
│   └── EncoderBackendError
└── GenerationError
    ├── GeneratorMisconfigured
    ├── GeneratorUnavailable
    └── PromptMissing
"""

from __future__ import annotations

from aitl.core.exceptions import AitlError


class RagError(AitlError):
    """The knowledge base or the draft pipeline failed."""


class DocumentError(RagError):
    """A document cannot be ingested."""


class UnsupportedFileType(DocumentError):
    """This file type cannot be ingested (use .md, .markdown, .html, .htm, .txt or .jsonl)."""


class EmptyDocument(DocumentError):
    """The document has no text."""


class DocumentTooLarge(DocumentError):
    """The document is larger than AITL_MAX_DOCUMENT_BYTES."""


class UndecodableText(DocumentError):
    """The file is not UTF-8 text."""


class MalformedRecord(DocumentError):
    """A JSONL record is not valid or lacks a field."""


class EmbeddingError(RagError):
    """Embeddings cannot be computed or stored."""


class EncoderBackendError(EmbeddingError):
    """An inference backend setting names no known backend."""


class ModelNotFound(EmbeddingError):
    """A model path in the settings does not exist; models are never downloaded at run time."""


class EmbeddingDimensionMismatch(EmbeddingError):
    """The embedding model's dimension differs from the stored index."""


class EmbeddingModelChanged(EmbeddingError):
    """The configured embedding model is not the one the live index was built with."""


class NoLiveEmbeddingVersion(EmbeddingError):
    """The knowledge base is empty: run `aitl kb ingest PATH` first."""


class GenerationError(RagError):
    """A draft could not be generated."""


class GeneratorMisconfigured(GenerationError):
    """The generator settings are incomplete."""


class GeneratorUnavailable(GenerationError):
    """The model endpoint did not answer."""


class PromptMissing(GenerationError):
    """A prompt file is missing from AITL_PROMPTS_DIR."""
