"""PodmanApiSource against small unix socket servers: answers, errors, silence, garbage.

Every way of not answering must become one SourceUnavailable line naming the URL,
never a traceback from podman-py, requests or urllib3.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness import ContainerInfo, PodmanApiSource, collect
from ipamguard.liveness.model import NETWORK_SET_UP, NETWORK_TORN_DOWN

A = "a" * 64
B = "b" * 64
C = "c" * 64

Handler = Callable[["UnixServer", socket.socket], object]  # result ignored


class UnixServer:
    """Accepts connections on a unix socket and hands each to handler (one thread)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.requests: list[bytes] = []
        self._handler = handler
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                self._handler(self, conn)

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        return data

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory name: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ipg-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Callable[[Handler], UnixServer]]:
    servers: list[UnixServer] = []

    def start(handler: Handler) -> UnixServer:
        server = UnixServer(sockdir / f"s{len(servers)}.sock", handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def http_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def answering(status: str, body: bytes) -> Handler:
    def handle(server: UnixServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(http_response(status, body))

    return handle


def failure(url: str, timeout: float = 2.0) -> str:
    with pytest.raises(SourceUnavailable) as info:
        PodmanApiSource(url, timeout=timeout).observe()
    message = str(info.value)
    assert message.startswith(f"podman API at {url}: ")
    assert "\n" not in message and "Traceback" not in message
    return message.removeprefix(f"podman API at {url}: ")


# ------------------------------------------------------------------ answers


PODMAN_LIST = [
    {"Id": A, "Names": ["web"], "State": "running", "Pid": 122},
    {"Id": B, "Names": ["old"], "State": "exited", "Pid": 0},
    {"Id": C, "Names": ["bc"], "State": "storage", "Command": ["buildah"]},  # external
]


def test_lists_all_and_external_containers(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(answering("200 OK", json.dumps(PODMAN_LIST).encode()))
    assert PodmanApiSource(server.url).observe() == [
        ContainerInfo(A, "running", "podman-api", "web"),
        ContainerInfo(B, "exited", "podman-api", "old"),
        ContainerInfo(C, "storage", "podman-api", "bc"),
    ]
    request_line = server.requests[0].split(b"\r\n")[0].decode()
    method, target, _ = request_line.split(" ")
    assert method == "GET"
    path, _, query = target.partition("?")
    assert path.endswith("/libpod/containers/json")
    assert sorted(query.split("&")) == ["all=True", "external=True"]


def inspected(sandbox_key: str | None, gone: bool = False) -> Handler:
    """The list, then for B (exited) its inspect document (or 404: removed meanwhile)."""

    def handle(server: UnixServer, conn: socket.socket) -> None:
        request = server.read_request(conn)
        target = request.split(b" ")[1].decode()
        if "/containers/json" in target:
            conn.sendall(http_response("200 OK", json.dumps(PODMAN_LIST).encode()))
        elif gone:
            body = json.dumps({"message": "no such container", "response": 404}).encode()
            conn.sendall(http_response("404 Not Found", body))
        else:
            settings = {} if sandbox_key is None else {"SandboxKey": sandbox_key}
            doc = {"Id": B, "State": {"Status": "exited"}, "NetworkSettings": settings}
            conn.sendall(http_response("200 OK", json.dumps(doc).encode()))

    return handle


@pytest.mark.parametrize(
    ("key", "network"),
    [("", NETWORK_TORN_DOWN), ("/run/netns/netns-1", NETWORK_SET_UP), (None, None)],
)
def test_an_exited_holder_is_inspected_for_its_network(
    serve: Callable[[Handler], UnixServer], key: str | None, network: str | None
) -> None:
    """SandboxKey set: cleanup never ran (the network is still set up); empty: torn down;
    missing: unknown. Only exited containers that hold addresses are inspected."""
    server = serve(inspected(key))
    seen = {i.id: i for i in PodmanApiSource(server.url).observe(holders={A, B})}
    assert seen[B].network == network and seen[B].sandbox == (key or "")
    assert seen[A].network is None  # running: not inspected
    targets = [r.split(b" ")[1].decode() for r in server.requests]
    assert len(targets) == 2 and targets[1].endswith(f"/containers/{B}/json")


def test_an_exited_holder_removed_meanwhile_is_gone(
    serve: Callable[[Handler], UnixServer],
) -> None:
    server = serve(inspected("", gone=True))
    seen = [i.id for i in PodmanApiSource(server.url).observe(holders={B})]
    assert seen == [A, C]


def test_a_500_race_with_a_removal_is_asked_again(serve: Callable[[Handler], UnixServer]) -> None:
    """podman 4.3 answers 500 ("determining buildah container for container X: container
    not known") when a container goes while it lists; the next ask answers."""
    race = json.dumps({"message": "container not known", "response": 500}).encode()
    answers = [("500 Internal Server Error", race), ("200 OK", json.dumps(PODMAN_LIST).encode())]

    def handle(server: UnixServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(http_response(*answers[min(len(server.requests), 2) - 1]))

    server = serve(handle)
    assert len(PodmanApiSource(server.url).observe()) == 3
    assert len(server.requests) == 2


def test_an_empty_list_is_an_answer(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(answering("200 OK", b"[]"))
    assert PodmanApiSource(server.url).observe() == []


def test_each_observe_opens_a_new_connection(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(answering("200 OK", b"[]"))
    source = PodmanApiSource(server.url)
    source.observe()
    source.observe()
    assert len(server.requests) == 2


# ------------------------------------------------------------------ failures


def test_no_socket(sockdir: Path) -> None:
    reason = failure(f"unix://{sockdir}/missing.sock")
    assert reason == "no socket there (is podman.socket or `podman system service` up?)"


def test_a_socket_nobody_listens_on(sockdir: Path) -> None:
    path = sockdir / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file stays, as after a killed service
    assert failure(f"unix://{path}") == "connection refused (nothing listens on the socket)"


def test_a_service_that_accepts_and_closes(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(lambda server, conn: None)
    assert failure(server.url) == "the service closed the connection without answering"


def test_a_service_that_closes_after_reading(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(lambda server, conn: server.read_request(conn))
    assert failure(server.url) == "the service closed the connection without answering"


def test_a_service_that_answers_garbage(serve: Callable[[Handler], UnixServer]) -> None:
    def garbage(server: UnixServer, conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    assert failure(serve(garbage).url) == "the answer is not HTTP"


def test_a_service_that_never_answers(serve: Callable[[Handler], UnixServer]) -> None:
    done = threading.Event()
    server = serve(lambda server, conn: done.wait(10))
    t0 = time.monotonic()
    try:
        assert failure(server.url, timeout=0.3) == "no answer within 0.3 s"
    finally:
        done.set()
    assert time.monotonic() - t0 < 3


def test_an_http_error(serve: Callable[[Handler], UnixServer]) -> None:
    body = json.dumps({"cause": "boom", "message": "database is\nlocked", "response": 500})
    server = serve(answering("500 Internal Server Error", body.encode()))
    assert failure(server.url) == "HTTP 500: database is locked"


def test_an_http_error_with_a_huge_body(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(answering("503 Service Unavailable", b"x" * 100_000))
    reason = failure(server.url)
    assert reason.startswith("HTTP 503: xxx") and reason.endswith("...")
    assert len(reason) < 250


@pytest.mark.parametrize(
    "body",
    [
        b"<html>hello</html>",
        # a list cut short after a whole entry (decoded one entry at a time): refused,
        # never taken as a list of one
        b'[{"Id": "' + A.encode() + b'", "State": "running"}, {"Id": "b',
        b'[{"Id": "' + A.encode() + b'", "State": "running"}] trailing',
        b'[{"Id": "' + A.encode() + b'", "State": "running"}',
    ],
)
def test_an_answer_that_is_not_json(serve: Callable[[Handler], UnixServer], body: bytes) -> None:
    server = serve(answering("200 OK", body))
    assert failure(server.url) == "the answer is not JSON"


def test_a_list_not_in_utf8_is_refused(serve: Callable[[Handler], UnixServer]) -> None:
    """json.loads would read a UTF-16 list; podman sends UTF-8, and the list is read one
    entry at a time from UTF-8 text: refused, with a line that says so."""
    body = json.dumps([{"Id": A, "State": "running"}]).encode("utf-16")
    server = serve(answering("200 OK", body))
    assert failure(server.url) == "the answer is not JSON in UTF-8"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"containers": []}, "unexpected answer: a JSON dict, not a list"),
        (["x"], "unexpected answer: a container entry is not an object"),
        ([{"Names": ["x"], "State": "running"}], "unexpected answer: a container entry without"),
        ([{"Id": A, "State": None}], "unexpected answer: a container entry without"),
    ],
)
def test_answers_of_the_wrong_shape(
    serve: Callable[[Handler], UnixServer], body: object, reason: str
) -> None:
    server = serve(answering("200 OK", json.dumps(body).encode()))
    assert failure(server.url).startswith(reason)


def test_a_url_podman_py_cannot_use() -> None:
    assert failure("ftp://example.invalid/x").startswith("cannot use this URL: The scheme 'ftp'")


def test_collect_records_the_failure_and_does_not_raise(sockdir: Path) -> None:
    url = f"unix://{sockdir}/missing.sock"
    snap = collect([PodmanApiSource(url)])
    assert not snap.complete
    assert snap.failures == (
        f"podman API at {url}: no socket there (is podman.socket or `podman system service` up?)",
    )
