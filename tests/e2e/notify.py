"""A NOTIFY_SOCKET that a test or a bench owns: what systemd would receive from the daemon."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any


class Notify:
    """A datagram socket in a directory the sandbox shares (its /tmp)."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        """Everything received so far, including what is still queued."""
        self.sock.setblocking(False)
        try:
            while True:
                self.received.extend(self.sock.recv(4096).decode().splitlines())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.2)
        return self.received

    def wait_for(
        self, prefix: str, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None
    ) -> str:
        """The first line received that starts with ``prefix``; ``proc``: the daemon,
        whose exit ends the wait at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.received:
                if line.startswith(prefix):
                    return line
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({proc.returncode}) before {prefix!r}")
            try:
                self.received.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
        raise AssertionError(
            f"no {prefix!r} on NOTIFY_SOCKET after {timeout} s; got {self.received}"
        )

    def close(self) -> None:
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)
