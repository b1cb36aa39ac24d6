"""Rootful and rootless paths."""

from __future__ import annotations

from ipamguard.ipam.paths import ROOTFUL, podman_paths, rootless_paths


def test_rootless_paths_follow_xdg() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CONFIG_HOME": "/home/u/cfg"}
    paths = rootless_paths(1000, env, "/home/u")
    assert paths.rootless
    assert paths.db == "/run/user/1000/containers/networks/ipam.db"
    assert paths.network_dir == "/home/u/cfg/containers/networks"
    assert paths.network_locks == ("/home/u/cfg/containers/networks/netavark.lock",)
    assert paths.socket_url == "unix:///run/user/1000/podman/podman.sock"
    assert paths.runtime_dirs[0] == "/run/user/1000/runc"
    assert paths.backup_dir == "/home/u/.local/state/ipamguard/backups"


def test_rootless_defaults_without_xdg() -> None:
    paths = rootless_paths(1000, {}, "/home/u")
    assert paths.db == "/run/user/1000/containers/networks/ipam.db"
    assert paths.network_dir == "/home/u/.config/containers/networks"


def test_rootful_is_the_default_for_root() -> None:
    assert podman_paths(user=False) is ROOTFUL
    assert ROOTFUL.db == "/run/containers/networks/ipam.db"
    assert ROOTFUL.network_locks == (
        "/run/lock/netavark.lock",
        "/etc/containers/networks/netavark.lock",
    )
    assert podman_paths(user=True).rootless
