"""Sentence embeddings from a local sentence-transformers model (never downloaded)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from rag import exceptions


def local_model_dir(path: str | Path, setting: str) -> Path:
    """The model folder, or a clear error naming the setting; hub names are refused on purpose."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise exceptions.ModelNotFound(
            f"{setting}={path}: no such model folder; models are loaded from local paths or "
            "installed wheels only, never downloaded"
        )
    return folder.resolve()


def fingerprint(folder: Path) -> str:
    """Identifies a model by its config and weight files, so a moved folder is still the same."""
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file() and (file.suffix == ".json" or file.suffix in (".safetensors", ".bin")):
            digest.update(file.relative_to(folder).as_posix().encode())
            digest.update(
                file.read_bytes() if file.suffix == ".json" else str(file.stat().st_size).encode()
            )
    return digest.hexdigest()[:16]


def version_slug(text: str) -> str:
    """A version name fit for an index name: lowercase letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "model"


@lru_cache(maxsize=4)
def _load(path: str):
    """Models are shared per process: every pipeline built for a request reuses the weights."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


class Embedder:
    """Encodes texts into L2-normalised vectors (cosine similarity = dot product)."""

    def __init__(
        self, path: str | Path, *, setting: str = "AITL_EMBEDDING_MODEL", batch_size: int = 64
    ) -> None:
        self.path = local_model_dir(path, setting)
        self.setting = setting
        self.batch_size = batch_size

    @cached_property
    def model(self):
        return _load(str(self.path))

    @cached_property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
