"""HTTP connections to podman's REST API with the standard library.

``unix:///run/podman/podman.sock`` (AF_UNIX) or ``tcp://HOST:PORT``. The API is
plain HTTP/1.1 with JSON: the two calls ipamguard makes (the container list and
the event stream) need no client library, so none is a dependency (Debian 12
has no podman-py, and podman-py reads ~/.config on every client it creates).
"""

from __future__ import annotations

import http.client
import socket

API_PREFIX = "/v4.0.0/libpod"


def connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """An unopened HTTP connection to podman's API at ``url``; ValueError if unusable."""
    if url.startswith("unix://"):
        return _UnixConnection(url[len("unix://") :], timeout)
    if url.startswith("tcp://"):
        host, _, port = url[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected tcp://HOST:PORT, got {url!r}")
        return http.client.HTTPConnection(host, int(port), timeout=timeout)
    scheme = url.partition("://")[0] if "://" in url else url
    raise ValueError(f"The scheme {scheme!r} is not supported: use unix:// or tcp://")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("d", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
