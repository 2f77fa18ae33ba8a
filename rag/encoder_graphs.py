"""The encoders' forward pass as a graph exported once (ONNX or OpenVINO IR), and the runners
that execute it: token ids in, the sentence embedding or the cross-encoder's logits out.

An export is current while its source folder's files and the exporting library are the ones
recorded in its ``export.json``; anything else is rebuilt by ``rag.encoders.prepare``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

# Importing OpenVINO starts its telemetry: a client id and usage counts in ~/intel, and each
# conversion reported to Google Analytics, unless the user opted out. The product sends nothing
# anywhere: without its telemetry package OpenVINO uses its own stub, so it is kept unimported.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[assignment]

Kind = Literal["embedder", "cross-encoder"]
EXPORTED = ("onnx", "openvino")
_OUTPUT = {"embedder": "sentence_embedding", "cross-encoder": "scores"}
_WEIGHTS = (".json", ".safetensors", ".bin", ".txt", ".model")


def available(backend: str) -> bool:
    """Whether this install can run a backend (its package is importable)."""
    module = {"onnx": "onnxruntime", "openvino": "openvino"}.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def source_key(folder: Path) -> str:
    """Identifies a model folder's exact files (path, names, sizes, times): a retrained model
    written over the same folder makes every export of it stale."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in _WEIGHTS and "exports" not in file.parts:
            stat = file.stat()
            digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def exports_folder(root: Path, model: Path) -> Path:
    """One folder per model folder under the data dir's exports."""
    from rag.embedding import version_slug  # embedding imports this module

    tag = hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:10]
    name = model.parent.name if model.name == "model" else model.name
    return root / f"{version_slug(name)}-{tag}"


class OnnxRunner:
    def __init__(self, folder: Path, names: list[str], threads: int | None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or 0
        self.session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.names = names

    def __call__(self, features: dict[str, Any]) -> np.ndarray:
        inputs = {n: features[n].numpy().astype(np.int64) for n in self.names}
        return np.asarray(self.session.run(None, inputs)[0], dtype=np.float32)


class OpenVinoRunner:
    def __init__(self, folder: Path, names: list[str], threads: int | None) -> None:
        import openvino

        config: dict[str, Any] = {"CACHE_DIR": str(folder / "cache")}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = openvino.Core().compile_model(str(folder / "model.xml"), "CPU", config)
        self.names = names

    def __call__(self, features: dict[str, Any]) -> np.ndarray:
        request = self.compiled.create_infer_request()  # one per call: requests are not shared
        result = request.infer([features[n].numpy().astype(np.int64) for n in self.names])
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)


RUNNERS = {"onnx": OnnxRunner, "openvino": OpenVinoRunner}


def load_st(path: str, kind: Kind) -> Any:
    if kind == "embedder":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device="cpu", local_files_only=True)
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cpu", local_files_only=True)


def _library_version(backend: str) -> str:
    import torch

    if backend == "openvino":
        import openvino

        return f"openvino {openvino.__version__}, torch {torch.__version__}"
    if backend == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    return f"torch {torch.__version__}"


def _input_names(st_model: Any, kind: Kind) -> list[str]:
    sample = ["a sample", "another sample text"]
    batch = [tuple(sample)] if kind == "cross-encoder" else sample
    return [k for k, v in st_model.preprocess(batch).items() if hasattr(v, "shape")]


def export(st_model: Any, kind: Kind, backend: str, folder: Path, key: str) -> None:
    """Writes the model's forward pass (token ids → embedding or scores) as a graph with dynamic
    batch and length, then ``export.json`` naming its source and the library that wrote it."""
    import torch

    names = _input_names(st_model, kind)
    texts = [("How do I reset my password?", "Open Settings, then Security.")] * 2
    sample = st_model.preprocess(texts if kind == "cross-encoder" else [t[0] for t in texts])
    args = tuple(sample[n] for n in names)
    forward = _forward_module(st_model, names, _OUTPUT[kind]).eval()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # tracing warns of every shape-dependent branch; the check against torch judges the graph
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if backend == "onnx":
            torch.onnx.export(
                forward,
                args,
                str(folder / "model.onnx"),
                input_names=names,
                output_names=["output"],
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "output": {0: "b"}},
                opset_version=17,
                dynamo=False,
            )
        else:
            import openvino

            graph = openvino.convert_model(
                forward, example_input=args, input=[([-1, -1], openvino.Type.i64)] * len(names)
            )
            openvino.save_model(graph, str(folder / "model.xml"), compress_to_fp16=False)
    record = {"source_key": key, "names": names, "library": _library_version(backend)}
    (folder / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _forward_module(st_model: Any, names: list[str], output: str):
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = st_model

        def forward(self, *inputs):
            features = dict(zip(names, inputs, strict=True))
            return self.model({**features, "modality": "text"})[output]

    return Forward()


def export_record(folder: Path, key: str, backend: str) -> dict[str, Any] | None:
    """The export's record when it is current (same source files, same library), else None."""
    try:
        record = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    graph = folder / ("model.onnx" if backend == "onnx" else "model.xml")
    current = record.get("source_key") == key and record.get("library") == _library_version(backend)
    return record if current and graph.is_file() else None
