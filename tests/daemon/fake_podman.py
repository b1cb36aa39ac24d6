"""A scripted podman API on a unix socket: ``/_ping`` and a chunked ``/events`` stream.

Only for the error paths a real podman cannot be made to take on demand (a stream
that breaks right away, HTTP errors); the real podman is in test_podman_real.py.
"""

from __future__ import annotations

import http.server
import os
import queue
import socketserver
import threading
from typing import Any


class FakePodman:
    """Serves until close(); ``send(line)`` streams an event, ``end_stream()`` cuts it."""

    def __init__(self, path: str, *, events_status: int = 200, close_at_once: bool = False):
        self.path = path
        self.events_status = events_status
        self.close_at_once = close_at_once
        self.requests: list[str] = []
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.streaming = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if self.path.endswith("/_ping"):
                    self._reply(200, b"OK")
                elif "/events?" in self.path:
                    fake._stream(self)
                else:
                    self._reply(404, b"no such endpoint")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _stream(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if self.events_status != 200:
            body = b'{"cause":"boom","message":"boom","response":500}'
            handler.send_response(self.events_status)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        self.streaming.set()
        if self.close_at_once:
            handler.close_connection = True
            return
        while True:
            line = self.lines.get()
            try:
                if line is None:
                    handler.wfile.write(b"0\r\n\r\n")
                    handler.close_connection = True
                    return
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                handler.wfile.flush()
            except OSError:  # the client went away
                handler.close_connection = True
                return

    def send(self, line: bytes) -> None:
        self.lines.put(line)

    def end_stream(self) -> None:
        self.lines.put(None)

    def close(self) -> None:
        self.lines.put(None)
        self._server.shutdown()
        self._server.server_close()
        os.unlink(self.path)
