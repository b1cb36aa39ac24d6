"""A blind spot made visible: podman or buildah processes that no source accounts for.

ipam.db is shared by every libpod instance of the same user, whatever its storage
configuration. podman's API (the default storage root) lists its own containers
from their creation on, and waits on a container's lock while a ``podman start``
of that container sets it up; so a podman process of the **default root** is
accounted for. Anything else is not, whatever its command line looks like:

- a podman whose storage is not the default root: ``--root``/``--runroot`` naming
  another directory, or ``CONTAINERS_STORAGE_CONF`` in its environment (the way
  the adversarial pass got past the first version of this guard), including a
  ``podman system service`` of another root serving ``podman --remote`` clients;
- ``podman build`` and buildah's ``run``/``bud``/``build``: their RUN containers
  allocate under ``buildah-…`` IDs before any runtime state exists;
- a podman process whose environment cannot be read (it might be any of these).

A podman of another root that only reads (``ps``, ``inspect``, ``logs``, ...) is
harmless. While a process that is not accounted for runs, this source fails: the
snapshot is incomplete, so nobody can tell whether an unknown ID is gone, and
nothing is released. (conmon's exit command, ``podman --root DEFAULT ... container
cleanup``, names the default root explicitly: that is the default root.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass

from ipamguard.errors import SourceUnavailable, SourceUncertain
from ipamguard.liveness.model import ContainerInfo
from ipamguard.liveness.runtime import proc_cmdline, proc_read

# podman's global options that take a value (``--opt VALUE``): skipped when
# looking for the sub-command. An unknown one makes its value look like a
# sub-command, which is never read-only: the error goes the safe way.
VALUE_OPTIONS = frozenset({
    "--root", "--runroot", "--storage-driver", "--storage-opt", "--imagestore",
    "--cgroup-manager", "--conmon", "--events-backend", "--hooks-dir", "--log-level",
    "--network-cmd-path", "--network-config-dir", "--network-backend", "--module",
    "--runtime", "--runtime-flag", "--ssh", "--tmpdir", "--url", "--connection", "-c",
    "--identity", "--volumepath", "--db-backend", "--config", "--registries-conf",
    "--out", "--syslog", "--transient-store", "--cpu-profile", "--memory-profile",
    "--trace", "--default-mounts-file",
})  # fmt: skip
READ_ONLY = frozenset({
    "ps", "inspect", "logs", "images", "info", "version", "events", "top", "stats",
    "port", "diff", "search", "login", "logout", "help", "df", "ls", "list", "exists",
    "history", "tree", "--help", "-h", "--version", "-v",
})  # fmt: skip
GROUPS = frozenset({"container", "image", "network", "pod", "volume", "system", "machine"})
BUILDAH_ALLOCATING = frozenset({"run", "bud", "build"})
PODMAN_BUILDING = frozenset({"build", "buildx"})
STORAGE_ENV = b"CONTAINERS_STORAGE_CONF="
# a podman whose environment cannot be read (the daemon's sandbox holds fewer
# capabilities than podman: /proc/PID/environ needs CAP_SYS_PTRACE then): its storage
# is unknown; only the network can then tell whether an address is in use
UNKNOWN_STORAGE = "podman whose environment cannot be read (its storage is unknown)"


@dataclass(frozen=True)
class DefaultRoot:
    """The storage root that podman's API serves (root and runroot directories)."""

    graphroot: str = "/var/lib/containers/storage"
    runroot: str = "/run/containers/storage"


def subcommand(argv: list[str]) -> list[str]:
    """The first two words after podman's global options (``["container", "cleanup"]``)."""
    words: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if arg in VALUE_OPTIONS:
            next(args, None)
        elif arg.startswith("-") and arg not in READ_ONLY:
            continue
        else:
            words.append(arg)
            if len(words) == 2:
                break
    return words


def option_values(argv: list[str], name: str) -> list[str]:
    """Every value of ``--name VALUE`` / ``--name=VALUE`` in argv."""
    values = []
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(name + "="):
            values.append(arg[len(name) + 1 :])
    return values


def unaccounted(
    argv: list[str], environ: bytes | Callable[[], bytes | None] | None, default: DefaultRoot
) -> str | None:
    """Why this process is not accounted for by the sources, or None if it is.

    ``environ``: its /proc/PID/environ, None when it could not be read (or a function
    that reads it: asked only for a podman that might be of another root).
    """
    if not argv:
        return None
    program = os.path.basename(argv[0])
    words = subcommand(argv)
    if program == "buildah":
        return "buildah at work" if BUILDAH_ALLOCATING & set(words) else None
    if program != "podman":
        return None
    if words[:1] and words[0] in PODMAN_BUILDING:
        return "podman build (its RUN containers allocate before any state exists)"
    if _read_only(words):
        return None
    roots = [os.path.normpath(v) for v in option_values(argv, "--root")]
    runroots = [os.path.normpath(v) for v in option_values(argv, "--runroot")]
    if any(r != os.path.normpath(default.graphroot) for r in roots) or any(
        r != os.path.normpath(default.runroot) for r in runroots
    ):
        return "podman of another storage root"
    if callable(environ):
        environ = environ()
    if environ is None:
        return UNKNOWN_STORAGE
    if any(v.startswith(STORAGE_ENV) and v != STORAGE_ENV for v in environ.split(b"\0")):
        return "podman with its own CONTAINERS_STORAGE_CONF"
    return None


def _read_only(words: list[str]) -> bool:
    if not words:
        return True  # plain `podman`: prints help
    if words[0] in READ_ONLY:
        return True
    return words[0] in GROUPS and len(words) == 2 and words[1] in READ_ONLY


class InFlightSource:
    """Fails while a podman or buildah process that no source accounts for runs."""

    name = "in-flight"

    def __init__(
        self, proc: str = "/proc", uid: int = 0, default: DefaultRoot | None = None
    ) -> None:
        self.proc = proc
        self.uid = uid  # whose processes share this ipam.db: root, or one rootless user
        self.default = default or DefaultRoot()

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        try:
            pids = sorted((p for p in os.listdir(self.proc) if p.isdigit()), key=int)
        except OSError as error:
            raise SourceUnavailable(f"processes in {self.proc}: {error.strerror}") from None
        me = str(os.getpid())
        doubts = []
        for pid in pids:
            if pid == me:
                continue
            argv, environ = self._process(pid)
            why = unaccounted(argv, environ, self.default)
            if why is None:
                continue
            shown = " ".join(argv)[:120]
            if why == UNKNOWN_STORAGE:
                doubts.append(f"pid {pid} ({shown}): {why}")
                continue
            raise SourceUnavailable(
                f"pid {pid} ({shown}): {why}; it may be setting up a container that "
                "no source sees yet"
            )
        if doubts:
            more = f" (and {len(doubts) - 1} more)" if len(doubts) > 1 else ""
            raise SourceUncertain(doubts[0] + more)
        return []

    def _process(self, pid: str) -> tuple[list[str], Callable[[], bytes | None]]:
        """argv of a process of ``uid`` ([] for others), and how to read its environment."""

        def environ() -> bytes | None:
            try:
                return proc_read(self.proc, pid, "environ")
            except SourceUnavailable:
                return None  # unreadable: its storage is unknown

        try:
            if os.stat(f"{self.proc}/{pid}").st_uid != self.uid:
                return [], environ
        except (FileNotFoundError, ProcessLookupError):
            return [], environ
        except OSError as error:
            raise SourceUnavailable(f"processes in {self.proc}: {error.strerror}") from None
        return proc_cmdline(self.proc, pid), environ
