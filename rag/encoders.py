"""Where the encoders' forward pass runs: torch, torch with bfloat16, ONNX Runtime or OpenVINO.

Training stays on torch; at run time the same weights run several times faster on a CPU through
a graph exported once into the data dir. A backend is used only when its outputs agree with torch
float32 on probe texts (embeddings: cosine ≥ ``AGREEMENT``; cross-encoder scores: correlation ≥
``AGREEMENT``), so vectors from any backend are interchangeable in one index.

``prepare`` exports and checks (slow: seconds; run at install, start-up, ingest and promotion);
``load`` only reads what ``prepare`` decided and never exports, so a request never waits for an
export: a missing or stale one falls back to torch with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rag import encoder_graphs as graphs
from rag import exceptions
from rag.encoder_graphs import Kind

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-bf16", "onnx", "openvino")
CHOICES = ("auto", *BACKENDS)
AGREEMENT = 0.999
# what ``auto`` times: the exported graphs. torch-bf16 runs only when named: its batches are
# fast, but a single query's autocast took 87.6 ms at p95 against OpenVINO's 5.9 (quiet-ish),
# and 303 ms at p50 under load at 50k chunks, where a noisy probe had made auto pick it
AUTO = ("openvino", "onnx")


@dataclass(frozen=True)
class BackendSettings:
    """The ``AITL_ENCODER_BACKEND`` choice and where exports live (None: torch only)."""

    choice: str = "torch"
    exports_dir: Path | None = None
    threads: int | None = None  # the exported graphs' threads (torch's are set per process)

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise exceptions.EncoderBackendError(
                f"AITL_ENCODER_BACKEND={self.choice!r}: expected one of {', '.join(CHOICES)}"
            )


TORCH = BackendSettings()


@dataclass
class Trial:
    """One backend measured on the probe texts against torch float32."""

    backend: str
    agreement: float | None = None
    texts_per_s: float | None = None
    export_s: float | None = None
    error: str | None = None

    @property
    def agrees(self) -> bool:
        return self.error is None and self.agreement is not None and self.agreement >= AGREEMENT


@dataclass
class Choice:
    """What ``prepare`` decided for one model, kept beside its exports as ``choice.json``."""

    backend: str
    requested: str
    kind: str
    source: str
    source_key: str
    trials: list[Trial] = field(default_factory=list)
    decided_at: str = ""
    note: str = ""

    def trial(self, backend: str) -> Trial | None:
        return next((t for t in self.trials if t.backend == backend), None)

    def summary(self) -> str:
        """One line for logs and ``aitl kb stats``: the backend, its agreement and speed-up."""
        chosen, base = self.trial(self.backend), self.trial("torch")
        parts = [self.backend if self.requested != "auto" else f"{self.backend} (auto)"]
        if chosen and chosen.agreement is not None and self.backend != "torch":
            parts.append(f"agreement {chosen.agreement:.5f}")
        if chosen and base and chosen.texts_per_s and base.texts_per_s and chosen is not base:
            parts.append(f"{chosen.texts_per_s / base.texts_per_s:.1f}× torch on the probe texts")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    @classmethod
    def read(cls, path: Path) -> Choice | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["trials"] = [Trial(**t) for t in raw.get("trials", [])]
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None


class EncoderModel:
    """A sentence-transformers model (bi- or cross-encoder) whose forward pass runs on a backend;
    tokenisation, pooling order and the cross-encoder's activation stay sentence-transformers'."""

    def __init__(self, st_model: Any, kind: Kind, backend: str, runner: Any = None) -> None:
        self.st = st_model
        self.kind = kind
        self.backend = backend
        self._runner = runner

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self._runner is None:
            with self._precision():
                vectors = self.st.encode(
                    list(texts),
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            return np.asarray(vectors, dtype=np.float32)
        vectors = self._run(list(texts), batch_size)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """One score per pair, after the model's activation (as ``CrossEncoder.predict``)."""
        if self._runner is None:
            with self._precision():
                scores = self.st.predict(
                    list(pairs),
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
            return np.asarray(scores, dtype=np.float32).reshape(len(pairs), -1)[:, 0]
        import torch

        logits = torch.from_numpy(self._run(list(pairs), batch_size))
        activated = self.st.activation_fn(logits) if self.st.activation_fn else logits
        return activated.float().numpy().reshape(len(pairs), -1)[:, 0]

    def _precision(self):
        if self.backend != "torch-bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def _run(self, items: list, batch_size: int) -> np.ndarray:
        """Length-sorted batches, as sentence-transformers does, so padding stays short."""
        if not items:
            width = 1 if self.kind == "cross-encoder" else self.st.get_embedding_dimension()
            return np.zeros((0, width), dtype=np.float32)
        order = np.argsort([-_length(item) for item in items], kind="stable")
        out: list[np.ndarray] = []
        for start in range(0, len(items), batch_size):
            batch = [items[i] for i in order[start : start + batch_size]]
            features = self.st.preprocess(batch)
            out.append(self._runner(features))
        result = np.concatenate(out)
        unsorted = np.empty_like(result)
        unsorted[order] = result
        return unsorted


def _length(item: Any) -> int:
    return sum(len(p) for p in item) if isinstance(item, tuple | list) else len(item)


# --- deciding ------------------------------------------------------------------------------

_PROBE = (
    "How do I reset my password?",
    "My order arrived damaged, can I get a refund?",
    "Is parking available at the hotel?",
    "The app crashes every time I open the camera on Android 14.",
    "Can I change the delivery address after the order has shipped?",
    "Refunds are issued to the original payment method within 5 to 10 business days once the "
    "returned item has been inspected at our warehouse.",
    "To reset your password, open Settings, choose Security and select Reset password. A link "
    "is sent to the email address on the account; it expires after 24 hours. If no email "
    "arrives, check the spam folder or ask an administrator to send a new invitation.",
    "Our restaurant offers vegetarian and vegan options on every menu, and the kitchen can "
    "prepare most dishes without gluten on request. Please mention allergies when booking so "
    "that the chef can plan ahead; we cannot guarantee a kitchen free of traces of nuts.",
    "Invoices are available under Billing > History as PDF files. Each invoice lists the "
    "plan, the billing period, taxes by country and the payment method used. Companies can add "
    "a VAT number and a billing address that will appear on every future invoice; past "
    "invoices can be reissued with the new details on request from the account owner.",
    "thanks",
    "Wifi is free in all rooms and in the lobby.",
    "I was charged twice for the same subscription this month, please refund one of them.",
)


def _probe_items(kind: Kind) -> list:
    texts = list(_PROBE)
    if kind == "embedder":
        return texts * 4
    return [(q, p) for q in texts[:5] for p in texts] * 2


def _agreement(kind: Kind, reference: np.ndarray, other: np.ndarray) -> float:
    if kind == "embedder":
        return float(np.min(np.sum(reference * other, axis=1)))
    ref, oth = reference - reference.mean(), other - other.mean()
    denominator = float(np.linalg.norm(ref) * np.linalg.norm(oth))
    return float(ref @ oth / denominator) if denominator > 0 else 0.0


def _outputs(model: EncoderModel, items: list) -> tuple[np.ndarray, float]:
    """The model's outputs on the probe items and its speed (the best of two timed passes)."""
    run = model.embed if model.kind == "embedder" else model.score
    run(items[:8])  # warm-up: the first call compiles or allocates
    best = float("inf")
    result = np.zeros(0)
    for _ in range(2):
        started = time.perf_counter()
        result = run(items)
        best = min(best, time.perf_counter() - started)
    return result, len(items) / best


_lock = threading.Lock()  # the loaded models, briefly
_preparing = threading.Lock()  # one decision at a time in a process
# the loaded models, least recently used first: a worker that has served many cycles keeps
# only the last few models (the live ones and a cycle's candidates)
_models: OrderedDict[tuple[str, str, BackendSettings], EncoderModel] = OrderedDict()
KEEP_MODELS = 6
_warned: set[tuple[str, str]] = set()


def prepare(
    path: Path, kind: Kind, settings: BackendSettings, *, prefer: Sequence[str] = ()
) -> Choice:
    """Exports and checks what the setting asks for and records the decision.

    ``auto`` times torch and the installed ``AUTO`` backends on the probe texts and keeps the
    fastest that agrees with torch float32; with ``prefer`` (the backend chosen for the model
    this one was trained from), the first of those that agrees is kept without timing the rest.
    A named backend is kept when it exports; a disagreement is logged, not refused. Any failure
    falls back to torch.
    Requests meanwhile are served by what was loaded before (``load`` does not wait for this),
    and processes sharing the data dir (web and worker starting together) decide one at a time.
    """
    path = path.resolve()
    if settings.choice == "torch" or settings.exports_dir is None:
        note = "as set" if settings.choice == "torch" else "no exports dir"
        return Choice("torch", settings.choice, kind, str(path), "", note=note)
    folder = graphs.exports_folder(settings.exports_dir, path)
    folder.mkdir(parents=True, exist_ok=True)
    key = graphs.source_key(path)
    with _preparing, _folder_lock(folder):
        known = Choice.read(folder / f"{kind}.json")
        if known and known.source_key == key and known.requested == settings.choice:
            graph = folder / known.backend
            if known.backend not in graphs.EXPORTED or graphs.export_record(
                graph, key, known.backend
            ):
                return known  # else its export went missing or stale: decided again
        started = time.perf_counter()
        choice = _decide(path, kind, settings, folder, key, list(prefer))
        choice.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
        written = folder / f"{kind}.json.tmp"
        written.write_text(json.dumps(asdict(choice), indent=2) + "\n", encoding="utf-8")
        written.replace(folder / f"{kind}.json")
    with _lock:
        for stale in [k for k in _models if k[0] == str(path) and k[1] == kind]:
            del _models[stale]
    log.info(
        "encoder backend for %s (%s): %s; decided in %.1f s",
        path.name,
        kind,
        choice.summary(),
        time.perf_counter() - started,
    )
    return choice


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a model's exports folder, across processes."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _decide(
    path: Path, kind: Kind, settings: BackendSettings, folder: Path, key: str, prefer: list[str]
) -> Choice:
    folder.mkdir(parents=True, exist_ok=True)
    st_model = graphs.load_st(str(path), kind)
    items = _probe_items(kind)
    torch_model = EncoderModel(st_model, kind, "torch")
    reference, torch_speed = _outputs(torch_model, items)
    base = Trial("torch", agreement=1.0, texts_per_s=round(torch_speed, 1))
    choice = Choice("torch", settings.choice, kind, str(path), key, trials=[base])
    if settings.choice == "torch":
        return choice
    if settings.choice == "auto":
        candidates = [b for b in prefer if b in BACKENDS and b != "torch"]
        candidates += [b for b in AUTO if b not in candidates]
    else:
        candidates = [settings.choice]
    for backend in candidates:
        trial = _trial(st_model, kind, backend, folder, key, items, reference, settings.threads)
        choice.trials.append(trial)
        if settings.choice == "auto" and backend in prefer and trial.agrees:
            choice.backend = backend  # as fast as for the model it was trained from
            choice.note = "the backend of the model it was trained from"
            return choice
    usable = [t for t in choice.trials[1:] if t.error is None]
    if settings.choice != "auto":
        if usable:
            choice.backend = usable[0].backend
            if not usable[0].agrees:
                choice.note = f"agrees with torch float32 below {AGREEMENT} (kept: it was named)"
        else:
            choice.note = f"{settings.choice} failed ({choice.trials[-1].error}); torch instead"
        return choice
    agreeing = [t for t in usable if t.agrees and (t.texts_per_s or 0) > (base.texts_per_s or 0)]
    if agreeing:
        choice.backend = max(agreeing, key=lambda t: t.texts_per_s or 0.0).backend
    for trial in choice.trials:  # only the chosen export is kept
        if trial.backend in graphs.EXPORTED and trial.backend != choice.backend:
            shutil.rmtree(folder / trial.backend, ignore_errors=True)
    return choice


def _trial(
    st_model: Any,
    kind: Kind,
    backend: str,
    folder: Path,
    key: str,
    items: list,
    reference: np.ndarray,
    threads: int | None,
) -> Trial:
    trial = Trial(backend)
    if not graphs.available(backend):
        trial.error = f"{backend} is not installed"
        return trial
    try:
        runner = None
        if backend in graphs.EXPORTED:
            target = folder / backend
            if graphs.export_record(target, key, backend) is None:
                started = time.perf_counter()
                graphs.export(st_model, kind, backend, target, key)
                trial.export_s = round(time.perf_counter() - started, 1)
            names = graphs.export_record(target, key, backend)["names"]  # type: ignore[index]
            runner = graphs.RUNNERS[backend](target, names, threads)
        outputs, speed = _outputs(EncoderModel(st_model, kind, backend, runner), items)
        trial.agreement = round(_agreement(kind, reference, outputs), 6)
        trial.texts_per_s = round(speed, 1)
    except Exception as exc:  # an export that fails leaves torch in charge
        log.warning("encoder backend %s failed for %s: %s", backend, folder.name, exc)
        trial.error = f"{type(exc).__name__}: {exc}"[:300]
    return trial


def recorded(path: Path, kind: Kind, settings: BackendSettings) -> Choice | None:
    """What ``prepare`` decided for this model, if it is still current."""
    if settings.exports_dir is None:
        return None
    choice = Choice.read(graphs.exports_folder(settings.exports_dir, path) / f"{kind}.json")
    if choice is None or choice.requested != settings.choice:
        return None
    return choice if choice.source_key == graphs.source_key(path.resolve()) else None


def describe(path: Path, kind: Kind, settings: BackendSettings) -> str:
    """Where this model runs, in one line for admins (``aitl kb stats``, the demo)."""
    if settings.choice == "torch":
        return "torch float32 (AITL_ENCODER_BACKEND=torch)"
    choice = recorded(path, kind, settings)
    if choice is None:
        if settings.choice == "torch-bf16":
            return "torch-bf16 (not checked yet)"
        return (
            f"torch float32 for now: no current export for AITL_ENCODER_BACKEND="
            f"{settings.choice} (start-up, ingest and `aitl kb prepare` build it)"
        )
    return choice.summary()


def load(path: Path, kind: Kind, settings: BackendSettings) -> EncoderModel:
    """The model on the backend ``prepare`` chose; torch (with one warning) when nothing
    current was prepared. Never exports: this runs when an agent waits."""
    key = (str(path.resolve()), kind, settings)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        st_model = graphs.load_st(key[0], kind)
        model = EncoderModel(st_model, kind, "torch")
        if settings.choice == "torch-bf16":
            model = EncoderModel(st_model, kind, "torch-bf16")
        elif settings.choice != "torch":
            model = _prepared(st_model, path, kind, settings) or model
        _models[key] = model
        while len(_models) > KEEP_MODELS:
            _models.popitem(last=False)
        return model


def _prepared(
    st_model: Any, path: Path, kind: Kind, settings: BackendSettings
) -> EncoderModel | None:
    choice = recorded(path, kind, settings)
    if choice is None:
        _warn(path, f"no current {settings.choice} export was prepared; torch float32 serves")
        return None
    if choice.backend not in graphs.EXPORTED:
        return EncoderModel(st_model, kind, choice.backend)
    target = graphs.exports_folder(settings.exports_dir, path) / choice.backend  # type: ignore[arg-type]
    record = graphs.export_record(target, choice.source_key, choice.backend)
    if record is None:
        _warn(path, f"the {choice.backend} export is missing or stale; torch float32 serves")
        return None
    try:
        runner = graphs.RUNNERS[choice.backend](target, record["names"], settings.threads)
    except Exception as exc:  # never an error for the agent
        _warn(path, f"the {choice.backend} export does not load ({exc}); torch float32 serves")
        return None
    return EncoderModel(st_model, kind, choice.backend, runner)


def _warn(path: Path, message: str) -> None:
    if (str(path), message) not in _warned:
        _warned.add((str(path), message))
        log.warning("%s: %s", path.name, message)
