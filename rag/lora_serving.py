"""Trained LoRA adapters loaded at run time into an OpenAI-compatible server (vLLM).

vLLM serves an adapter once it is loaded with ``POST /v1/load_lora_adapter``; requests then
name the adapter as their model. This needs ``vllm serve <base> --enable-lora`` with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` in the server's environment (without it the routes
do not exist: 404). Loading a name vLLM already holds answers 400 "has already been loaded",
which counts as loaded here. What this process loaded is remembered, so rebuilding the draft
pipeline does not post again; a restarted vLLM forgets its adapters, and so does a restart here.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx

from rag import exceptions

log = logging.getLogger(__name__)

VLLM_NEEDS = (
    "vLLM loads adapters at run time only when started with --enable-lora and "
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment"
)

# (server root, adapter name) -> the path the server loaded it from, for this process
_loaded: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` (AITL_OPENAI_BASE_URL) -> ``http://host:8000``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def forget_all() -> None:
    """Forget what this process loaded (tests; or after the vLLM server restarted)."""
    with _lock:
        _loaded.clear()


class RuntimeAdapters:
    """Loads and unloads LoRA adapters on the server at ``base_url`` (AITL_OPENAI_BASE_URL).

    ``models_dir`` is where adapters live here (``<data_dir>/models``); ``lora_root`` is where
    the server sees that folder (AITL_OPENAI_LORA_ROOT; None: the same path).
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str,
        timeout_s: float,
        models_dir: Path,
        lora_root: Path | None = None,
    ) -> None:
        if not base_url:
            raise exceptions.GeneratorMisconfigured(
                "AITL_GENERATOR=openai needs AITL_OPENAI_BASE_URL (e.g. http://localhost:8000/v1)"
            )
        self.root = server_root(base_url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.models_dir = models_dir
        self.lora_root = lora_root

    def server_path(self, adapter_dir: Path) -> str:
        """The adapter folder as the server sees it: re-rooted under ``lora_root`` if set."""
        local = Path(adapter_dir).expanduser().resolve()
        if self.lora_root is None:
            return str(local)
        models = Path(self.models_dir).expanduser().resolve()
        try:
            relative = local.relative_to(models)
        except ValueError:
            raise exceptions.GeneratorMisconfigured(
                f"adapter {local} is not under {models}, so AITL_OPENAI_LORA_ROOT="
                f"{self.lora_root} cannot say where the vLLM server sees it"
            ) from None
        return str(self.lora_root / relative)

    def ensure_loaded(self, name: str, adapter_dir: Path) -> None:
        """Have the server serve ``adapter_dir`` as model ``name``; once per process.

        Raises GeneratorUnavailable when the server cannot be reached or refuses.
        """
        lora_path = self.server_path(adapter_dir)
        key = (self.root, name)
        with _lock:
            if _loaded.get(key) == lora_path:
                return
        url = f"{self.root}/v1/load_lora_adapter"
        response = self._post(url, {"lora_name": name, "lora_path": lora_path}, name)
        if response.status_code == 200:
            log.info("vLLM at %s loaded LoRA adapter %s from %s", self.root, name, lora_path)
        elif response.status_code == 400 and _already_loaded(_message(response)):
            log.info("vLLM at %s already serves LoRA adapter %s", self.root, name)
        else:
            raise exceptions.GeneratorUnavailable(
                f"vLLM did not load LoRA adapter {name!r} from {lora_path}: POST {url} answered "
                f"{response.status_code} {_message(response)!r}. {VLLM_NEEDS}, and must see the "
                "adapter folder at that path (AITL_OPENAI_LORA_ROOT)."
            )
        with _lock:
            _loaded[key] = lora_path

    def unload(self, name: str) -> None:
        """Stop serving adapter ``name``; a name the server does not hold is already unloaded."""
        url = f"{self.root}/v1/unload_lora_adapter"
        response = self._post(url, {"lora_name": name}, name)
        message = _message(response)
        gone = response.status_code == 404 and "cannot be found" in message.lower()
        if response.status_code != 200 and not gone:
            raise exceptions.GeneratorUnavailable(
                f"vLLM did not unload LoRA adapter {name!r}: POST {url} answered "
                f"{response.status_code} {message!r}. {VLLM_NEEDS}."
            )
        with _lock:
            _loaded.pop((self.root, name), None)

    def _post(self, url: str, body: dict[str, str], name: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            return httpx.post(url, json=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise exceptions.GeneratorUnavailable(
                f"LoRA adapter {name!r}: POST {url} failed ({exc.__class__.__name__}: {exc}). "
                f"{VLLM_NEEDS}."
            ) from exc


def _message(response: httpx.Response) -> str:
    """The server's reason: vLLM's error ``message`` (flat or under ``error``), else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for field in ("message", "detail"):
            if body.get(field):
                return str(body[field])
    return response.text.strip()


def _already_loaded(message: str) -> bool:
    text = message.lower()
    return "already" in text and "loaded" in text
