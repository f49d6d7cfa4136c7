"""A real HTTP server on 127.0.0.1 for download tests: serves a folder from a thread.

`truncate` makes chosen files misbehave like a dropped connection: the server announces
the full Content-Length, sends only the first N bytes and closes the socket. `status`
makes chosen paths answer with an HTTP error status instead.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LocalServer:
    """A running server: `url(name)` gives a file's URL; `hits` counts GETs per file name."""

    base_url: str
    truncate: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_state: LocalServer

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.server_state.hits[name] += 1
        if name in self.server_state.status:
            self.send_error(self.server_state.status[name])
            return
        cut = self.server_state.truncate.get(name)
        if cut is None:
            super().do_GET()
            return
        body = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        # Drop the connection before the announced length arrives.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@contextlib.contextmanager
def serve_directory(
    root: Path,
    *,
    truncate: Mapping[str, int] | None = None,
    status: Mapping[str, int] | None = None,
) -> Iterator[LocalServer]:
    """Serve `root` on a free port of 127.0.0.1 until the block ends.

    `truncate` maps a file name (relative to `root`) to the number of bytes sent before
    the connection is dropped; `status` maps a file name to an HTTP error status to answer.
    """
    state = LocalServer(base_url="", truncate=dict(truncate or {}), status=dict(status or {}))
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval keeps shutdown (and so each test) quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 where nothing listens, so connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Yield the base URL of a socket that accepts connections but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
