"""A tiny stand-in for ``vllm serve <base> --enable-lora`` on 127.0.0.1, for tests only.

It answers like vLLM's OpenAI-compatible server on the routes the product uses:

- ``POST /v1/chat/completions``: the reply says which model drafted it (``drafted by NAME``);
  a model that is neither the base nor a loaded adapter is a 404, as in vLLM.
- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}``: 400 when the name is already
  loaded or no ``adapter_config.json`` is seen at the path, else 200 with a plain-text line.
- ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: 404 when the name is not loaded.
- ``GET /v1/models``: the base model and the loaded adapters (``parent`` = the base).

``runtime_updates=False`` is vLLM without ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``: the two
adapter routes do not exist (404 ``{"detail": "Not Found"}``). ``mounts`` maps a folder as the
server sees it to a local folder, as a container volume does, so re-rooted paths can be checked.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.fake_openai import completion


class FakeVLLM:
    """``with FakeVLLM("base-llm") as server:``; ``server.calls`` logs (method, path, body)."""

    def __init__(
        self,
        base_model: str = "base-llm",
        *,
        runtime_updates: bool = True,
        mounts: dict[str, Path] | None = None,
        flat_errors: bool = False,
    ) -> None:
        self.base_model = base_model
        self.runtime_updates = runtime_updates
        self.mounts = dict(mounts or {})
        self.flat_errors = flat_errors  # older vLLM: {"message", "type", "code"} at the top
        self.adapters: dict[str, str] = {}  # loaded: name -> lora_path
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """As AITL_OPENAI_BASE_URL is usually set: ending in /v1."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def posts(self, path: str) -> list[dict[str, Any]]:
        """The bodies POSTed to ``path`` (e.g. ``/v1/load_lora_adapter``), in order."""
        return [body for method, p, body in self.calls if method == "POST" and p == path]

    def __enter__(self) -> FakeVLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- what the routes answer ----------------------------------------------------------

    def _sees_adapter(self, lora_path: str) -> bool:
        path = Path(lora_path)
        for seen, local in self.mounts.items():
            if path.is_relative_to(seen):
                path = Path(local) / path.relative_to(seen)
                break
        return (path / "adapter_config.json").is_file()

    def _error(self, status: int, message: str, kind: str) -> tuple[int, Any]:
        info = {"message": message, "type": kind, "param": None, "code": status}
        return status, ({"object": "error", **info} if self.flat_errors else {"error": info})

    def _load(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return self._error(
                400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput"
            )
        if name in self.adapters:
            return self._error(
                400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput"
            )
        if not self._sees_adapter(path):
            return self._error(
                400, f"Loading lora {name} failed: No adapter found for {path}", "BadRequestError"
            )
        self.adapters[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def _unload(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("lora_name")
        if name not in self.adapters:
            return self._error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.adapters[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def _chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        model = body.get("model")
        if model != self.base_model and model not in self.adapters:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
        return 200, completion(model, f"drafted by {model}")

    def _models(self) -> dict[str, Any]:
        cards = [
            {"id": self.base_model, "object": "model", "root": self.base_model, "parent": None}
        ]
        cards += [
            {"id": name, "object": "model", "root": path, "parent": self.base_model}
            for name, path in self.adapters.items()
        ]
        return {"object": "list", "data": cards}

    def _answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self.calls.append((method, path, body))
            if method == "GET" and path == "/v1/models":
                return 200, self._models()
            if method == "POST" and path == "/v1/chat/completions":
                return self._chat(body)
            adapters = {
                "/v1/load_lora_adapter": self._load,
                "/v1/unload_lora_adapter": self._unload,
            }
            if method == "POST" and path in adapters and self.runtime_updates:
                return adapters[path](body)
            return 404, {"detail": "Not Found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def do_GET(self) -> None:
                self._send(*fake._answer("GET", self.path.rstrip("/"), {}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._send(*fake._answer("POST", self.path.rstrip("/"), body))

            def _send(self, status: int, payload: Any) -> None:
                if isinstance(payload, str):  # vLLM answers a load or unload in plain text
                    data, kind = payload.encode(), "text/plain; charset=utf-8"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
