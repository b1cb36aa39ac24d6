"""sd_notify(3) in the standard library: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.

Messages go as one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket). Outside systemd (no NOTIFY_SOCKET) nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends ``KEY=value`` lines to systemd's notification socket, if there is one."""

    __slots__ = ("_address", "_socket")

    def __init__(self, address: str | None) -> None:
        """address: NOTIFY_SOCKET's value; anything but a path or ``@name`` disables."""
        if address and address[0] == "@":
            self._address: str | None = "\0" + address[1:]
        elif address and address[0] == "/":
            self._address = address
        else:
            self._address = None
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """``notify(READY=1, STATUS="...")``; True if systemd got it (or none is there)."""
        if self._address is None:
            return True
        text = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.settimeout(1.0)  # never hang the event loop on a full queue
            self._socket.sendto(text.encode(), self._address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """systemd's watchdog timeout in seconds (WATCHDOG_USEC), or None when off.

    WATCHDOG_PID, when set, must be our pid (the variable was meant for another
    process otherwise, e.g. the shell of ExecStart).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000
