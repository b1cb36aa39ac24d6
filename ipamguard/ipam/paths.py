"""Everything ipamguard touches for one podman (root's, or one rootless user's).

Built in one place (``podman_paths``) for the CLI and the daemon alike: from
podman's own configuration (ipamguard.podman_config), then ipamguard's overrides
(``--db``, ``--network-dir``, ``[paths]``...). The network locks always follow the
network config directory in use. Under the CNI backend the configs are CNI's
(``cni_config_dir``), its host-local files are in ``cni_data_dir`` and podman's
network lock is ``cni_locks`` (see ipamguard.podman_config).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ipamguard.podman_config import (
    CNI_LOCK_NAME,
    DEFAULT_SUBNET,
    ROOTFUL_CNI_DATA_DIR,
    ROOTFUL_CNI_LOCK,
    PodmanSetup,
    read_setup,
)

ROOTFUL_DB = "/run/containers/networks/ipam.db"
ROOTFUL_NETWORK_DIR = "/etc/containers/networks"
PODMAN_SOCKET_URL = "unix:///run/podman/podman.sock"
BACKUP_DIR = "/var/lib/ipamguard/backups"
RUNTIMES = ("runc", "crun", "youki")
ROOTFUL_CNI_CONFIG_DIR = "/etc/cni/net.d"


@dataclass(frozen=True)
class PodmanPaths:
    """Everything ipamguard touches, for rootful podman or one user's rootless podman."""

    db: str
    network_dir: str
    network_locks: tuple[str, ...]
    socket_url: str
    runtime_dirs: tuple[str, ...]
    backup_dir: str
    rootless: bool = False
    uid: int = 0
    graphroot: str = "/var/lib/containers/storage"
    runroot: str = "/run/containers/storage"
    default_network: str = "podman"
    network_backend: str | None = None  # "netavark", "cni", or None: not known
    cni_config_dir: str = ROOTFUL_CNI_CONFIG_DIR
    cni_data_dir: str = ROOTFUL_CNI_DATA_DIR
    cni_locks: tuple[str, ...] = (ROOTFUL_CNI_LOCK, f"{ROOTFUL_CNI_CONFIG_DIR}/{CNI_LOCK_NAME}")
    default_subnet: str = DEFAULT_SUBNET

    def with_network_dir(self, network_dir: str) -> PodmanPaths:
        """These paths with another netavark network config dir, and the locks that go
        with it (CNI's config dir is podman's own: containers.conf, see podman_config)."""
        return dataclasses.replace(
            self, network_dir=network_dir, network_locks=network_locks(network_dir, self.rootless)
        )


def network_locks(network_dir: str, rootless: bool = False) -> tuple[str, ...]:
    """podman's network lock files for this network config dir, in the fixed order."""
    in_dir = os.path.join(network_dir, "netavark.lock")
    return (in_dir,) if rootless else ("/run/lock/netavark.lock", in_dir)


def cni_in_use(paths: PodmanPaths) -> bool:
    """Does this podman keep allocations in CNI's host-local files?

    Yes when it uses the CNI backend (containers.conf ``network_backend``, else
    ``$graphroot/defaultNetworkBackend``), or when its choice is not known and the
    files exist. Under netavark, CNI files left from before are not podman's.
    """
    if paths.network_backend is not None:
        return paths.network_backend == "cni"
    return os.path.isdir(paths.cni_data_dir)


def from_setup(setup: PodmanSetup, backup_dir: str) -> PodmanPaths:
    return PodmanPaths(
        db=setup.ipam_db,
        network_dir=setup.network_dir,
        network_locks=setup.network_locks,
        socket_url=f"unix://{setup.runtime_dir}/podman/podman.sock",
        runtime_dirs=tuple(os.path.join(setup.runtime_dir, r) for r in RUNTIMES),
        backup_dir=backup_dir,
        rootless=setup.rootless,
        uid=setup.uid,
        graphroot=setup.graphroot,
        runroot=setup.runroot,
        default_network=setup.default_network,
        network_backend=setup.network_backend,
        cni_config_dir=setup.cni_config_dir,
        cni_data_dir=setup.cni_data_dir,
        cni_locks=setup.cni_locks,
        default_subnet=setup.default_subnet,
    )


def rootless_paths(uid: int, env: Mapping[str, str], home: str) -> PodmanPaths:
    """One user's rootless podman, as that user's configuration says."""
    state_home = env.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    setup = read_setup(True, uid, env, home)
    return from_setup(setup, os.path.join(state_home, "ipamguard", "backups"))


def rootful_paths(env: Mapping[str, str] | None = None) -> PodmanPaths:
    """Root's podman, as /etc/containers says."""
    return from_setup(read_setup(False, 0, env or {}, "/root"), BACKUP_DIR)


def podman_paths(user: bool | None = None) -> PodmanPaths:
    """Rootful paths as root, the caller's rootless paths otherwise (or with ``user``)."""
    if user is None:
        user = os.geteuid() != 0
    if not user:
        return rootful_paths(os.environ)
    return rootless_paths(os.getuid(), os.environ, os.path.expanduser("~"))
