"""Rootful and rootless paths, read the way podman reads its configuration."""

from __future__ import annotations

from pathlib import Path

from ipamguard.context import Overrides, build_context
from ipamguard.ipam.paths import network_locks, rootful_paths, rootless_paths
from ipamguard.podman_config import read_setup


def test_rootless_defaults_follow_podman() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    paths = rootless_paths(1000, env, "/home/u")
    assert paths.rootless and paths.uid == 1000
    assert paths.db == "/run/user/1000/containers/networks/ipam.db"
    # podman keeps rootless network configs and its lock under the graphroot
    assert paths.network_dir == "/home/u/.local/share/containers/storage/networks"
    assert paths.network_locks == (
        "/home/u/.local/share/containers/storage/networks/netavark.lock",
    )
    assert paths.socket_url == "unix:///run/user/1000/podman/podman.sock"
    assert paths.runtime_dirs[0] == "/run/user/1000/runc"
    assert paths.backup_dir == "/home/u/.local/state/ipamguard/backups"
    assert paths.graphroot == "/home/u/.local/share/containers/storage"
    assert paths.runroot == "/run/user/1000/containers"


def test_rootless_without_xdg_runtime_dir() -> None:
    paths = rootless_paths(1000, {}, "/home/u")
    assert paths.db == "/run/user/1000/containers/networks/ipam.db"


def test_rootless_storage_conf_moves_graphroot_and_runroot(tmp_path: Path) -> None:
    conf = tmp_path / "cfg" / "containers"
    conf.mkdir(parents=True)
    (conf / "storage.conf").write_text(
        '[storage]\ndriver = "overlay"\ngraphroot = "/srv/u/storage"\nrunroot = "/run/u/c"\n'
    )
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    paths = rootless_paths(1000, env, "/home/u")
    assert paths.network_dir == "/srv/u/storage/networks"
    assert paths.db == "/run/u/c/networks/ipam.db"
    assert paths.network_locks == ("/srv/u/storage/networks/netavark.lock",)


def test_containers_conf_network_config_dir_moves_configs_and_lock(tmp_path: Path) -> None:
    conf = tmp_path / "cfg" / "containers"
    conf.mkdir(parents=True)
    (conf / "containers.conf").write_text(
        '[network]\nnetwork_config_dir = "/srv/nets"\ndefault_network = "main"\n'
    )
    env = {"XDG_RUNTIME_DIR": "/run/user/7", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    paths = rootless_paths(7, env, "/home/u")
    assert paths.network_dir == "/srv/nets"
    assert paths.network_locks == ("/srv/nets/netavark.lock",)
    assert paths.default_network == "main"


def test_rootful_reads_etc_containers(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "containers" / "containers.conf.d").mkdir(parents=True)
    (etc / "containers" / "storage.conf").write_text('[storage]\ngraphroot = "/data/c"\n')
    (etc / "containers" / "containers.conf").write_text('[network]\ndefault_network = "a"\n')
    (etc / "containers" / "containers.conf.d" / "10.conf").write_text(
        '[network]\ndefault_network = "b"\nnetwork_backend = "netavark"\n'
    )
    setup = read_setup(False, 0, {}, "/root", etc=str(etc))
    assert setup.graphroot == "/data/c"
    assert setup.runroot == "/run/containers/storage"
    assert setup.default_network == "b"  # the drop-in wins, key by key
    assert setup.network_backend == "netavark"
    assert setup.ipam_db == "/run/containers/networks/ipam.db"
    assert setup.network_locks == (
        "/run/lock/netavark.lock",
        "/etc/containers/networks/netavark.lock",
    )


def test_containers_conf_env_replaces_the_files(tmp_path: Path) -> None:
    only = tmp_path / "only.conf"
    only.write_text('[network]\nnetwork_backend = "cni"\n')
    setup = read_setup(False, 0, {"CONTAINERS_CONF": str(only)}, "/root", etc=str(tmp_path))
    assert setup.network_backend == "cni"


def test_a_broken_config_file_is_ignored(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "containers").mkdir(parents=True)
    (etc / "containers" / "containers.conf").write_text("[network\n")
    setup = read_setup(False, 0, {}, "/root", etc=str(etc))
    assert setup.default_network == "podman"


def test_rootful_defaults() -> None:
    paths = rootful_paths({})
    assert paths.db == "/run/containers/networks/ipam.db"
    assert not paths.rootless and paths.uid == 0


def test_network_dir_override_moves_the_lock_too() -> None:
    """The CLI's --network-dir used to leave the lock at the default path."""
    ctx = build_context(False, Overrides(network_dir="/srv/nets", db="/tmp/x.db"))
    assert ctx.paths.network_dir == "/srv/nets"
    assert ctx.paths.network_locks == network_locks("/srv/nets")
    assert ctx.paths.network_locks[-1] == "/srv/nets/netavark.lock"
    assert ctx.paths.db == "/tmp/x.db"
