"""Where podman keeps ipam.db, its network configs and its network lock."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ROOTFUL_DB = "/run/containers/networks/ipam.db"
ROOTFUL_NETWORK_DIR = "/etc/containers/networks"

# podman 5 (containers/common >= 0.57) and podman 4 take one of these; taking
# every one that exists, always in this order, is safe.
ROOTFUL_NETWORK_LOCKS = (
    "/run/lock/netavark.lock",
    f"{ROOTFUL_NETWORK_DIR}/netavark.lock",
)

PODMAN_SOCKET_URL = "unix:///run/podman/podman.sock"
BACKUP_DIR = "/var/lib/ipamguard/backups"


def network_locks(network_dir: str, rootless: bool = False) -> tuple[str, ...]:
    """podman's network lock files for this network config dir, in the fixed order."""
    in_dir = os.path.join(network_dir, "netavark.lock")
    return (in_dir,) if rootless else ("/run/lock/netavark.lock", in_dir)


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


ROOTFUL = PodmanPaths(
    db=ROOTFUL_DB,
    network_dir=ROOTFUL_NETWORK_DIR,
    network_locks=ROOTFUL_NETWORK_LOCKS,
    socket_url=PODMAN_SOCKET_URL,
    runtime_dirs=("/run/runc", "/run/crun", "/run/youki"),
    backup_dir=BACKUP_DIR,
)


def rootless_paths(uid: int, env: Mapping[str, str], home: str) -> PodmanPaths:
    """Rootless podman's paths: runroot under $XDG_RUNTIME_DIR, configs under ~/.config."""
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    state_home = env.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    network_dir = os.path.join(config_home, "containers", "networks")
    return PodmanPaths(
        db=os.path.join(runtime, "containers", "networks", "ipam.db"),
        network_dir=network_dir,
        network_locks=network_locks(network_dir, rootless=True),
        socket_url=f"unix://{runtime}/podman/podman.sock",
        runtime_dirs=tuple(os.path.join(runtime, r) for r in ("runc", "crun", "youki")),
        backup_dir=os.path.join(state_home, "ipamguard", "backups"),
        rootless=True,
    )


def podman_paths(user: bool | None = None) -> PodmanPaths:
    """Rootful paths as root, the caller's rootless paths otherwise (or with ``user``)."""
    if user is None:
        user = os.geteuid() != 0
    if not user:
        return ROOTFUL
    return rootless_paths(os.getuid(), os.environ, os.path.expanduser("~"))
