"""Sentence embeddings from a local sentence-transformers model (never downloaded), run on the
inference backend of ``AITL_ENCODER_BACKEND`` (``rag.encoders``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from rag import encoders, exceptions


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


class Embedder:
    """Encodes texts into L2-normalised vectors (cosine similarity = dot product).

    Models are shared per process (``encoders.load``): every pipeline built for a request reuses
    the weights. ``prepare`` exports the model for the configured backend; without it the model
    runs on torch float32, whose vectors every backend agrees with.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        setting: str = "AITL_EMBEDDING_MODEL",
        batch_size: int = 64,
        backend: encoders.BackendSettings = encoders.TORCH,
    ) -> None:
        self.path = local_model_dir(path, setting)
        self.setting = setting
        self.batch_size = batch_size
        self.backend_settings = backend

    @cached_property
    def model(self) -> encoders.EncoderModel:
        return encoders.load(self.path, "embedder", self.backend_settings)

    @property
    def backend(self) -> str:
        """The backend the vectors come from (``torch`` until a model is loaded)."""
        return self.model.backend

    def prepare(self, *, prefer: Sequence[str] = ()) -> encoders.Choice:
        """Exports and checks the backend (seconds, once per model); later loads use it."""
        choice = encoders.prepare(self.path, "embedder", self.backend_settings, prefer=prefer)
        self.__dict__.pop("model", None)
        return choice

    @cached_property
    def dimension(self) -> int:
        return int(self.model.st.get_embedding_dimension())

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.model.embed(texts, self.batch_size)
