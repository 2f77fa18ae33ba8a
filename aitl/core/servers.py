"""Run an ASGI app in a background thread: the local sandboxes, the demo and tests use it.

The listening socket is bound here, before uvicorn starts, so port 0 yields a free port
that is known (and already accepting connections into the backlog) when this returns.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn

from aitl.core.exceptions import AitlError

STARTUP_TIMEOUT_S = 10.0


class ServerDidNotStart(AitlError):
    """The server did not start."""


@dataclass
class RunningServer:
    """A uvicorn server serving in a daemon thread; ``stop()`` or use it as a context manager."""

    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit; force it when a slow request keeps it past ``timeout``."""
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0: any free port) and return once it has started."""
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True
    )
    thread.start()
    running = RunningServer(host, sock.getsockname()[1], server, thread)
    _wait_started(running, sock)
    return running


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _wait_started(running: RunningServer, sock: socket.socket) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not running.server.started:
        if not running.thread.is_alive() or time.monotonic() > deadline:
            running.stop(timeout=1.0)
            sock.close()
            raise ServerDidNotStart(f"the server on {running.url} did not start")
        time.sleep(0.01)
