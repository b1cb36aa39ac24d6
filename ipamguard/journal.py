"""journald's native protocol, written directly (no libsystemd, no python-systemd).

One datagram per entry on ``/run/systemd/journal/socket`` (AF_UNIX, SOCK_DGRAM):
``KEY=value\\n`` per field; a value holding a newline takes the binary-safe form
``KEY\\n<length as little-endian u64><bytes>\\n``. An entry too large for a datagram
(EMSGSIZE, ENOBUFS) goes into a sealed memfd whose descriptor is passed with
SCM_RIGHTS and an empty datagram, as systemd's own ``sd_journal_send`` does.

``encode_entry`` is pure; ``JournalSocket`` does the I/O.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import re
import socket
import struct
from collections.abc import Iterable

JOURNAL_SOCKET = "/run/systemd/journal/socket"

MAX_FIELD_NAME = 64  # journald drops fields with longer names
_INVALID_NAME_CHARS = re.compile(r"[^A-Z0-9_]")
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def field_name(key: str, prefix: str = "") -> str:
    """A valid journal field name for ``key``: uppercase, A-Z 0-9 _, at most 64 chars.

    journald drops names that start with ``_`` (trusted fields) or a digit; those
    get an ``X`` in front unless ``prefix`` (e.g. ``IPAMGUARD_``) already protects them.
    """
    name = prefix + _INVALID_NAME_CHARS.sub("_", key.upper())
    if not name or name[0] == "_" or name[0].isdigit():
        name = "X" + name
    return name[:MAX_FIELD_NAME]


def encode_entry(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """One entry in the native protocol; names must already be valid (``field_name``)."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


class JournalSocket:
    """Sends encoded entries to journald; every error is an ``OSError`` to the caller."""

    __slots__ = ("_path", "_socket", "_timeout")

    def __init__(self, path: str = JOURNAL_SOCKET, timeout: float = 1.0) -> None:
        """timeout: how long a send may wait while journald's queue is full."""
        self._path = path
        self._timeout = timeout
        self._socket: socket.socket | None = None

    @property
    def path(self) -> str:
        return self._path

    def send(self, datagram: bytes) -> None:
        sock = self._get_socket()
        try:
            sock.sendto(datagram, self._path)
        except OSError as error:
            if error.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(sock, datagram)

    def _send_memfd(self, sock: socket.socket, datagram: bytes) -> None:
        fd = os.memfd_create("journal-message", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(datagram)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            rights = array.array("i", [fd])
            sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self._path)
        finally:
            os.close(fd)

    def _get_socket(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.settimeout(self._timeout)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
