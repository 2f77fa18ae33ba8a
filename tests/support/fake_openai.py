"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for tests only.

It stands in for a large LLM endpoint (vLLM, Ollama, TGI): the code under test talks to it
over real HTTP through the real ``openai`` client, so only the model's answer is fake.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the server answers to one request."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    """``with FakeOpenAI(responder) as server:`` serves ``POST /v1/chat/completions``.

    Every request body (parsed JSON) is appended to ``server.requests``; the responder turns
    it into a :class:`Reply`. Non-200 replies carry an OpenAI-style error body.
    """

    def __init__(self, responder: Responder | str = "Hello.") -> None:
        if isinstance(responder, str):
            text = responder
            responder = lambda _body: Reply(text)  # noqa: E731
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # a short poll interval keeps shutdown() from waiting up to the default 0.5 s
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.paths.append(self.path)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(
                        404,
                        {
                            "error": {
                                "message": f"no route {self.path}",
                                "type": "invalid_request_error",
                            }
                        },
                        {},
                    )
                    return
                reply = fake.responder(body)
                if reply.status != 200:
                    payload = {
                        "error": {
                            "message": f"fake failure {reply.status}",
                            "type": "server_error",
                            "code": None,
                        }
                    }
                else:
                    payload = completion(body.get("model", "fake"), reply.content)
                self._send(reply.status, payload, reply.headers)

            def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def completion(model: str, content: str) -> dict[str, Any]:
    """A ``chat.completion`` object as the OpenAI API returns it."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
