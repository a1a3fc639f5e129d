"""A real HTTP server for download tests: 127.0.0.1, a random port, a thread, files from memory.

It answers GET and HEAD with ``Range: bytes=N-`` / ``bytes=N-M`` (206, and 416 past the end), and
can misbehave on purpose: fail with given status codes first, cut a transfer after some bytes,
ignore Range, or send slowly; it can require HTTP basic auth. Every request is logged (method, path,
Range and Authorization headers, status).
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Hit:
    method: str
    path: str
    range: str | None
    status: int
    authorization: str | None = None


@dataclass
class FileServer:
    """Files by URL path (the query is ignored), and how to misbehave while serving them."""

    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)  # statuses to answer first, per path
    cut_after: dict[str, int] = field(default_factory=dict)  # close the next GET after N body bytes
    ignore_range: bool = False
    throttle: tuple[int, float] | None = None  # (bytes, seconds): send this many, then sleep
    auth: tuple[str, str] | None = None  # (user, password) required as basic auth, else 401
    log: list[Hit] = field(default_factory=list)
    port: int = 0

    def add(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> str:
        self.files[path] = data
        if headers:
            self.headers[path] = headers
        return self.url(path)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.root + path

    def gets(self, path: str | None = None) -> list[Hit]:
        return [hit for hit in self.log if hit.method == "GET" and (path is None or hit.path == path)]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a cut is a closed socket

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _status(self, status: int, headers: dict[str, str], payload: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command == "GET":
                self.wfile.write(payload)

        def _answer(self, body: bool) -> None:
            path = urlsplit(self.path).path
            wanted = self.headers.get("Range")

            authorization = self.headers.get("Authorization")

            def hit(status: int) -> None:
                server.log.append(Hit(self.command, path, wanted, status, authorization))

            if server.auth is not None:
                token = base64.b64encode(":".join(server.auth).encode()).decode()
                if authorization != f"Basic {token}":
                    hit(401)
                    self._status(401, {"WWW-Authenticate": 'Basic realm="rsir"', "Content-Type": "text/plain"}, b"no\n")
                    return
            failures = server.fail.get(path)
            if failures:
                status = failures.pop(0)
                hit(status)
                self._status(status, {"Content-Type": "text/plain"}, f"failing on purpose: {status}\n".encode())
                return
            data = server.files.get(path)
            if data is None:
                hit(404)
                self._status(404, {"Content-Type": "text/plain"}, b"not found\n")
                return
            start, end, status = 0, len(data) - 1, 200
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
            if match and not server.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    hit(416)
                    self._status(416, {"Content-Range": f"bytes */{len(data)}"})
                    return
                end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
                status = 206
            hit(status)
            payload = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(payload)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            for key, value in server.headers.get(path, {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not body:
                return
            try:
                cut = server.cut_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if server.throttle:
                    size, pause = server.throttle
                    for offset in range(0, len(payload), size):
                        self.wfile.write(payload[offset : offset + size])
                        self.wfile.flush()
                        time.sleep(pause)
                        if server.throttle is None:  # lifted mid-transfer: send the rest at once
                            self.wfile.write(payload[offset + size :])
                            break
                    return
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the client went away (killed on purpose)

    return Handler


@contextmanager
def serve(server: FileServer | None = None) -> Iterator[FileServer]:
    """Run ``server`` on 127.0.0.1 at a free port for the duration of the block."""
    server = server or FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
