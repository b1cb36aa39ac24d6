"""podman's event stream: decoding, prompt stop, down/up with backoff, broken streams.

Events are taken from a real podman 4.3 (see test_podman_real.py for the real thing);
here a scripted API on a unix socket (fake_podman.py) drives the error paths.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipamguard.daemon.podman_events import EVENT_FILTERS, PodmanEvents, trigger_from_event
from ipamguard.daemon.triggers import Trigger

from .fake_podman import FakePodman

CID = "3bec7030e75e61ca7f10cc770d877b47337077519646f43bd6b3620ac3531fe6"


def podman43_event(
    kind: str, action: str, name: str = "c1", actor_id: str = CID
) -> dict[str, object]:
    """An event as podman 4.3's /libpod/events sends it."""
    attributes = {"containerExitCode": "0", "image": "", "name": name, "podId": ""}
    return {
        "status": action, "id": actor_id, "from": "localhost/bb:latest", "Type": kind,
        "Action": action, "Actor": {"ID": actor_id, "Attributes": attributes},
        "scope": "local", "time": 1700000000, "timeNano": 1700000000000000000,
    }  # fmt: skip


def test_trigger_from_event() -> None:
    assert trigger_from_event(podman43_event("container", "died")) == Trigger(
        "podman-event", CID, "container died c1"
    )
    assert trigger_from_event(podman43_event("container", "remove", name="")) == Trigger(
        "podman-event", CID, f"container remove {CID[:12]}"
    )
    assert trigger_from_event(podman43_event("network", "disconnect")) == Trigger(
        "podman-event", CID, "network disconnect c1"
    )
    assert trigger_from_event(podman43_event("network", "remove", "net1", "f" * 64)) == Trigger(
        "podman-event", None, "network remove net1"
    )
    for kind, action in (("container", "create"), ("container", "attach"), ("image", "remove"),
                         ("network", "connect")):  # fmt: skip
        assert trigger_from_event(podman43_event(kind, action)) is None
    assert trigger_from_event({"Type": "container"}) is None
    assert trigger_from_event({"Type": "container", "Action": "died", "Actor": "junk"}) == Trigger(
        "podman-event", None, "container died"
    )


class Collector:
    """Gathers pushed triggers; a stand-in for the service's push."""

    def __init__(self) -> None:
        self.triggers: list[tuple[float, Trigger]] = []

    def __call__(self, trigger: Trigger) -> None:
        self.triggers.append((time.monotonic(), trigger))

    def kinds(self) -> list[str]:
        return [t.kind for _, t in self.triggers]

    def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; got {self.kinds()}"
            time.sleep(0.01)


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "podman.sock")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_events_are_pushed_and_stop_is_prompt(
    socket_path: str, loop: asyncio.AbstractEventLoop
) -> None:
    fake = FakePodman(socket_path)
    got = Collector()
    source = PodmanEvents(f"unix://{socket_path}")
    source.start(loop, got)
    try:
        assert fake.streaming.wait(5)
        for action in ("create", "start", "died", "cleanup", "remove"):
            fake.send(json.dumps(podman43_event("container", action)).encode() + b"\n")
        fake.send(b"not json\n")
        got.wait(lambda: len(got.triggers) == 4)
        assert [t.reason for _, t in got.triggers] == [
            "container start c1", "container died c1", "container cleanup c1",
            "container remove c1",
        ]  # fmt: skip
        ping, events = fake.requests
        assert ping == "/v4.0.0/libpod/_ping"
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(events).query)
        assert query["stream"] == ["true"]
        assert json.loads(query["filters"][0]) == EVENT_FILTERS
        # the thread blocks in recv without a timeout; stop() wakes it at once
        started = time.monotonic()
    finally:
        source.stop()
        fake.close()
    assert time.monotonic() - started < 0.5
    assert got.kinds() == ["podman-event"] * 4  # no down/up for a stop


def test_down_once_then_up_after_reconnecting(
    socket_path: str, loop: asyncio.AbstractEventLoop
) -> None:
    got = Collector()
    source = PodmanEvents(f"unix://{socket_path}", backoff_initial=0.05, backoff_max=0.2)
    source.start(loop, got)
    try:
        got.wait(lambda: got.kinds() == ["podman-down"])
        time.sleep(0.6)  # several failed attempts: still one alert
        assert got.kinds() == ["podman-down"]
        assert "No such file or directory" in got.triggers[0][1].reason
        fake = FakePodman(socket_path)
        got.wait(lambda: got.kinds() == ["podman-down", "podman-up"], timeout=1.0)
        fake.send(json.dumps(podman43_event("container", "died")).encode() + b"\n")
        got.wait(lambda: len(got.triggers) == 3)
        # podman restarts: the stream ends, reconnecting succeeds at once
        fake.end_stream()
        got.wait(lambda: got.kinds()[-1] == "podman-up")
        assert got.kinds() == ["podman-down", "podman-up", "podman-event", "podman-up"]
    finally:
        source.stop()
        fake.close()


def test_a_stream_that_breaks_at_once_backs_off(
    socket_path: str, loop: asyncio.AbstractEventLoop
) -> None:
    fake = FakePodman(socket_path, close_at_once=True)
    got = Collector()
    source = PodmanEvents(f"unix://{socket_path}", backoff_initial=0.05, backoff_max=0.4)
    source.start(loop, got)
    time.sleep(1.2)
    source.stop()
    fake.close()
    streams = sum(1 for r in fake.requests if "/events" in r)
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ...: about 5, never a busy loop
    assert 3 <= streams <= 7, streams
    assert set(got.kinds()) == {"podman-up"}  # reachable, but events may be lost: resync


def test_http_errors_count_as_down(socket_path: str, loop: asyncio.AbstractEventLoop) -> None:
    fake = FakePodman(socket_path, events_status=500)
    got = Collector()
    source = PodmanEvents(f"unix://{socket_path}", backoff_initial=0.05)
    source.start(loop, got)
    try:
        got.wait(lambda: got.kinds() == ["podman-down"])
        assert "events: HTTP 500" in got.triggers[0][1].reason
    finally:
        source.stop()
        fake.close()


def test_stop_during_backoff_is_prompt(socket_path: str, loop: asyncio.AbstractEventLoop) -> None:
    got = Collector()
    source = PodmanEvents(f"unix://{socket_path}", backoff_initial=30.0)
    source.start(loop, got)
    got.wait(lambda: got.kinds() == ["podman-down"])
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 0.5
