"""journald's native protocol: encoding, field names, and the memfd path for big entries.

A datagram socket bound by the test stands in for journald's socket here (the
real journald is in tests/daemon/test_journald_real.py).
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipamguard.journal import JournalSocket, encode_entry, field_name


def decode_entry(data: bytes) -> list[tuple[str, bytes]]:
    """The reverse of encode_entry, as journald parses it."""
    fields = []
    while data:
        line_end = data.index(b"\n")
        line = data[:line_end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = data[line_end + 1 :]
        else:
            key = line
            (size,) = struct.unpack_from("<Q", data, line_end + 1)
            start = line_end + 9
            value = data[start : start + size]
            assert data[start + size : start + size + 1] == b"\n"
            data = data[start + size + 1 :]
        fields.append((key.decode(), value))
    return fields


@pytest.fixture
def journal_server(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    yield server, path
    server.close()


def receive(server: socket.socket) -> tuple[bytes, int | None]:
    """One datagram and the descriptor passed with it, if any."""
    fds = array.array("i")
    data, ancillary, _flags, _addr = server.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, (fds[0] if fds else None)


def test_field_names() -> None:
    assert field_name("container_id", "IPAMGUARD_") == "IPAMGUARD_CONTAINER_ID"
    assert field_name("ip", "IPAMGUARD_") == "IPAMGUARD_IP"
    assert field_name("retry-in.s", "IPAMGUARD_") == "IPAMGUARD_RETRY_IN_S"
    assert field_name("größe", "IPAMGUARD_") == "IPAMGUARD_GR_SSE"  # str.upper
    assert field_name("_PID") == "X_PID"  # never a trusted field
    assert field_name("9lives") == "X9LIVES"
    assert field_name("") == "X"
    assert len(field_name("k" * 100, "IPAMGUARD_")) == 64


def test_encoding_simple_and_binary_safe_values() -> None:
    data = encode_entry(
        [("MESSAGE", "two\nlines"), ("PRIORITY", "6"), ("IPAMGUARD_IP", "10.0.0.1"),
         ("BLOB", b"a=b\x00c")]
    )  # fmt: skip
    assert data.startswith(b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\nPRIORITY=6\n")
    assert decode_entry(data) == [
        ("MESSAGE", b"two\nlines"), ("PRIORITY", b"6"), ("IPAMGUARD_IP", b"10.0.0.1"),
        ("BLOB", b"a=b\x00c"),
    ]  # fmt: skip


def test_small_entries_go_as_one_datagram(journal_server: tuple[socket.socket, str]) -> None:
    server, path = journal_server
    journal = JournalSocket(path)
    journal.send(encode_entry([("MESSAGE", "hello")]))
    data, fd = receive(server)
    assert (data, fd) == (b"MESSAGE=hello\n", None)
    journal.close()


def test_big_entries_go_in_a_sealed_memfd(journal_server: tuple[socket.socket, str]) -> None:
    server, path = journal_server
    big = "x" * 300_000 + "\nend"  # larger than a datagram may be (EMSGSIZE)
    entry = encode_entry([("MESSAGE", big), ("IPAMGUARD_IP", "10.0.0.1")])
    JournalSocket(path).send(entry)
    data, fd = receive(server)
    assert data == b"" and fd is not None
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        assert os.pread(fd, len(entry) + 1, 0) == entry
        assert decode_entry(entry)[0] == ("MESSAGE", big.encode())
    finally:
        os.close(fd)


def test_errors_reach_the_caller(tmp_path: Path) -> None:
    journal = JournalSocket(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        journal.send(b"MESSAGE=x\n")
