"""A blind spot made visible: containers being set up where no source sees them.

A container of another storage root (``podman --root X start``) holds its
address from its network setup until its conmon starts, and in that window no
source sees it: not podman's API (another root), not runtime state, not
conmon. ``buildah run`` likewise allocates before its runtime state exists.
While such a process runs, this source says so as a failure: the snapshot is
incomplete, so nobody can tell whether an unknown ID is gone, and nothing is
released. Containers of the default root need no such care: podman's API lists
them from their creation on.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import ContainerInfo

# podman sub-commands that may set up a container's network
PODMAN_ALLOCATING = frozenset({"run", "start", "restart", "init", "play", "kube", "pod", "connect"})
ROOT_FLAGS = ("--root", "--runroot")


def in_flight(argv: list[str]) -> bool:
    """Is this a process that may be allocating addresses where no source sees them?"""
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if program == "buildah":
        return any(word in ("run", "bud", "build") for word in argv[1:])
    if program != "podman":
        return False
    other_root = any(a in ROOT_FLAGS or a.startswith(("--root=", "--runroot=")) for a in argv)
    return other_root and any(word in PODMAN_ALLOCATING for word in argv[1:])


class InFlightSource:
    """Fails while a podman of another storage root or a buildah may be allocating."""

    name = "in-flight"

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc

    def observe(self) -> list[ContainerInfo]:
        try:
            pids = sorted((p for p in os.listdir(self.proc) if p.isdigit()), key=int)
        except OSError as error:
            raise SourceUnavailable(f"processes in {self.proc}: {error.strerror}") from None
        for pid in pids:
            argv = self._root_cmdline(pid)
            if in_flight(argv):
                shown = " ".join(argv)[:120]
                raise SourceUnavailable(
                    f"pid {pid} ({shown}) may be setting up a container that no source "
                    "sees yet (another storage root, or buildah)"
                )
        return []

    def _root_cmdline(self, pid: str) -> list[str]:
        """argv of a process of root (rootless podman has an ipam.db of its own)."""
        base = Path(self.proc, pid)
        try:
            if base.stat().st_uid != 0:
                return []
            raw = (base / "cmdline").read_bytes().rstrip(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return []
        except OSError as error:
            raise SourceUnavailable(f"processes in {self.proc}: {error.strerror}") from None
        return [a.decode(errors="replace") for a in raw.split(b"\0")] if raw else []
