"""sd_notify against datagram sockets bound by the test (path and abstract)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipamguard.daemon.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_messages_arrive_in_order(path_socket: tuple[socket.socket, str]) -> None:
    sock, address = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.notify(READY=1, STATUS="2 networks, 5 allocations")
    assert notifier.notify(WATCHDOG=1)
    assert notifier.notify(STOPPING=1)
    received = [sock.recv(4096) for _ in range(3)]
    assert received == [
        b"READY=1\nSTATUS=2 networks, 5 allocations\n",
        b"WATCHDOG=1\n",
        b"STOPPING=1\n",
    ]
    notifier.close()


def test_abstract_socket() -> None:
    name = f"ipamguard-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier(f"@{name}")
        assert notifier.notify(READY=1)
        assert sock.recv(4096) == b"READY=1\n"


def test_nothing_outside_systemd() -> None:
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        notifier = Notifier.from_environ(environ)
        assert not notifier.enabled
        assert notifier.notify(READY=1)  # silently nothing


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone")).notify(READY=1)


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    mine = {"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 0.5
    assert watchdog_interval({**mine, "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_interval({**mine, "WATCHDOG_PID": "1"}, pid=1) == 0.5
