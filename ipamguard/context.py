"""One place that builds what check, repair, release, restore and the daemon use.

Paths (podman's own configuration, then ipamguard's overrides), podman's locks
(always the ones that go with the network config dir in use), the liveness
sources and the timeouts: the CLI and the daemon both call ``build_context``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipamguard.config import Config
from ipamguard.errors import UsageError
from ipamguard.ipam.paths import PodmanPaths, cni_in_use, podman_paths
from ipamguard.liveness import (
    ConmonSource,
    InFlightSource,
    LivenessSource,
    PodmanApiSource,
    RuntimeStateSource,
)
from ipamguard.liveness.inflight import DefaultRoot

if TYPE_CHECKING:
    from ipamguard.fenced import Prober
    from ipamguard.liveness.probe import ProbeResult
    from ipamguard.stores.base import AllocationStore

MAX_TIMEOUT = 3600.0  # any timeout above this is a typo, not a wish
DAEMON_LOCK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Overrides:
    """What the command line or the configuration file sets explicitly (None: podman's)."""

    db: str | None = None
    network_dir: str | None = None
    socket_url: str | None = None
    backup_dir: str | None = None


@dataclass(frozen=True)
class Context:
    """Where things are, how long to wait, and whom to ask."""

    paths: PodmanPaths
    lock_timeout: float = 2.0
    podman_timeout: float = 5.0
    backups_keep: int = 20
    full_backup_seconds: float = 3600.0
    podman_command: bool = False  # ask the `podman` command when the API socket is absent
    create_locks: bool = True  # create podman's missing lock files (not for offline copies)
    # judge orphan networks against paths.network_dir (not for an offline copy, which
    # may come from another host, unless its network configs are named explicitly)
    networks_known: bool = True
    proc: str = "/proc"
    # the sources, when not the ones the paths imply (tests swap the backend here)
    api: tuple[LivenessSource, ...] | None = None
    local: tuple[LivenessSource, ...] | None = None

    def api_sources(self) -> list[LivenessSource]:
        """podman itself: its API, or (CLI, no socket) the podman command."""
        if self.api is not None:
            return list(self.api)
        if self.podman_command and not _socket_exists(self.paths.socket_url):
            from ipamguard.liveness.podman_cli import PodmanCommandSource

            return [PodmanCommandSource(timeout=max(self.podman_timeout, 30.0))]
        return [PodmanApiSource(self.paths.socket_url, self.podman_timeout)]

    def local_sources(self) -> list[LivenessSource]:
        """Sources that take no podman lock: safe to ask while holding the network lock.

        In this order: a podman of another root exits only after its container's conmon
        and runtime state exist, so if the in-flight guard no longer sees it, the later
        looks see those (tests/liveness/test_source_order.py: the other way round, a
        start that moves on between the looks is seen by none)."""
        if self.local is not None:
            return list(self.local)
        default = DefaultRoot(self.paths.graphroot, self.paths.runroot)
        return [
            InFlightSource(self.proc, uid=self.paths.uid, default=default),
            ConmonSource(self.proc),
            RuntimeStateSource(self.paths.runtime_dirs, self.proc),
        ]

    def sources(self) -> list[LivenessSource]:
        return [*self.api_sources(), *self.local_sources()]

    def stores(self) -> list[AllocationStore]:
        """Every allocation store of this podman, netavark's first: ipam.db unless podman
        uses CNI and there is none, and CNI's files when podman uses CNI (or its choice
        is not known and they exist); see ipamguard.stores and ``cni_in_use``."""
        found = []
        if self.paths.network_backend != "cni" or os.path.lexists(self.paths.db):
            found.append(self.store("netavark"))
        if cni_in_use(self.paths) and not is_offline(self.paths):
            found.append(self.store("cni"))
        return found

    def store(self, kind: str) -> AllocationStore:
        """The store of that kind ("netavark", "cni"), whether podman uses it or not."""
        from ipamguard.stores.cni import CniStore
        from ipamguard.stores.netavark import NetavarkStore

        paths = self.paths
        if kind == "netavark":
            return NetavarkStore(
                paths.db, self.lock_timeout, paths.backup_dir, self.backups_keep,
                self.full_backup_seconds, network_locks=paths.network_locks,
            )  # fmt: skip
        if kind == "cni":
            return CniStore(
                paths.cni_data_dir, paths.cni_config_dir, self.lock_timeout, paths.backup_dir,
                self.backups_keep, default_network=paths.default_network,
                default_subnet=paths.default_subnet, network_locks=paths.cni_locks,
                prober=self._cni_prober(),
            )  # fmt: skip
        raise UsageError(f"no allocation store of kind {kind!r} (netavark, cni)")

    def prober(self) -> Prober | None:
        """Probes addresses on their network's bridge; None where that cannot work.

        A rootless podman's bridges live in its own network namespace (pasta's or
        slirp's), which the host cannot reach: its releases rely on podman's sources.
        """
        if self.paths.rootless:
            return None
        from ipamguard.liveness.bridges import probe_networks

        network_dir = self.paths.network_dir

        def prober(wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, ProbeResult]]:
            return probe_networks(wanted, network_dir)

        return prober

    def _cni_prober(self) -> Prober | None:
        """The CNI store's: its networks' bridges from their .conflist (rootless: none)."""
        if self.paths.rootless:
            return None
        from ipamguard.liveness.bridges import probe_networks

        config_dir = self.paths.cni_config_dir

        def prober(wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, ProbeResult]]:
            return probe_networks(wanted, config_dir, cni=True)

        return prober


def build_context(
    user: bool | None,
    overrides: Overrides,
    *,
    lock_timeout: float = 2.0,
    podman_timeout: float = 5.0,
    backups_keep: int = 20,
    full_backup_seconds: float = 3600.0,
    podman_command: bool = False,
) -> Context:
    """The context for root's podman (``user`` False), the caller's rootless podman
    (True), or whichever fits the caller (None: rootless unless run as root)."""
    paths = podman_paths(user)
    if overrides.network_dir:
        paths = paths.with_network_dir(overrides.network_dir)
    paths = dataclasses.replace(
        paths,
        db=overrides.db or paths.db,
        socket_url=overrides.socket_url or paths.socket_url,
        backup_dir=overrides.backup_dir or paths.backup_dir,
    )
    offline = is_offline(paths)
    if offline and not overrides.backup_dir:
        # a copy's backups stay beside it, never among the live file's
        paths = dataclasses.replace(paths, backup_dir=offline_backup_dir(paths.db))
    return Context(
        paths,
        lock_timeout=lock_timeout,
        podman_timeout=podman_timeout,
        backups_keep=backups_keep,
        # a URL named explicitly is the one to ask, not the podman command
        full_backup_seconds=full_backup_seconds,
        podman_command=podman_command and not overrides.socket_url,
        create_locks=not offline,
        networks_known=not offline or bool(overrides.network_dir),
    )


def offline_backup_dir(db: str) -> str:
    """Where the backups of an offline copy of ipam.db go: beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(db)), ".ipamguard-backups")


def is_offline(paths: PodmanPaths) -> bool:
    """Is ``paths.db`` another file than the ipam.db podman of this mode uses (a copy)?

    podman's network locks are still taken for such a file if they exist (it may be
    podman's after all, under a path we do not know), but never created.
    """
    live = podman_paths(paths.rootless).db
    try:
        return not os.path.samefile(paths.db, live)
    except OSError:
        return os.path.realpath(paths.db) != os.path.realpath(live)


def _socket_exists(url: str) -> bool:
    return not url.startswith("unix://") or os.path.exists(url[len("unix://") :])


def resolve_config(config: Config, user: bool) -> Config:
    """``config`` with every path podman decides (None) filled in for the mode."""
    paths = podman_paths(user)
    network_dir = config.paths.network_dir or paths.network_dir
    return dataclasses.replace(
        config,
        paths=dataclasses.replace(
            config.paths,
            db=config.paths.db or paths.db,
            network_dir=network_dir,
            backup_dir=config.paths.backup_dir or paths.backup_dir,
        ),
        podman=dataclasses.replace(config.podman, url=config.podman.url or paths.socket_url),
    )


def daemon_context(config: Config, user: bool) -> Context:
    """The daemon's context: podman's API only (it needs the event stream anyway)."""
    overrides = Overrides(
        db=config.paths.db,
        network_dir=config.paths.network_dir,
        socket_url=config.podman.url,
        backup_dir=config.paths.backup_dir,
    )
    return build_context(
        user,
        overrides,
        lock_timeout=DAEMON_LOCK_TIMEOUT,
        podman_timeout=config.podman.timeout_seconds,
        backups_keep=config.paths.backups_keep,
        full_backup_seconds=config.paths.full_backup_seconds,
    )
