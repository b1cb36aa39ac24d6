"""Where podman keeps things, read the way podman reads its own configuration.

containers.conf (``[network]`` network_backend, network_config_dir,
default_network) and storage.conf (``[storage]`` graphroot, runroot,
rootless_storage_path), for root or for one rootless user, in podman's order:

- containers.conf: ``$CONTAINERS_CONF`` alone if set, else /usr/share/containers/,
  /etc/containers/ (+ ``containers.conf.d/*.conf``), and for a user
  ``$XDG_CONFIG_HOME/containers/`` (+ ``.d``); later files win, key by key.
- storage.conf: ``$CONTAINERS_STORAGE_CONF`` if set, else for root
  /etc/containers/storage.conf or /usr/share/containers/storage.conf; for a user
  ``$XDG_CONFIG_HOME/containers/storage.conf``, else the system file's
  ``rootless_storage_path``, else ``~/.local/share/containers/storage``.

Then (containers/common libnetwork/network/interface.go): rootful ipam.db is
/run/containers/networks/ipam.db, rootless ``$runroot/networks/ipam.db``; network
configs in ``network_config_dir``, else /etc/containers/networks (root) or
``$graphroot/networks`` (rootless); the network lock /run/lock/netavark.lock
(root, podman >= 4.4) or ``$network_config_dir/netavark.lock`` (podman 4.0-4.3, and
every rootless podman).

CNI backend (containers/common libnetwork/cni, libnetwork/network/interface.go):
configs ``*.conflist`` in ``network_config_dir``, else /etc/cni/net.d (root) or
``$XDG_CONFIG_HOME/cni/net.d`` (rootless); podman's network lock
/run/lock/podman-cni.lock (root, podman >= 4.4) or ``$cni_config_dir/cni.lock``
(podman 4.0-4.3, and every rootless podman); host-local's files in
/var/lib/cni/networks (root) or, for a rootless podman (whose plugins run in its
rootless-netns), ``$tmp_dir/rootless-netns/var/lib/cni/networks`` with tmp_dir
containers.conf's ``[engine] tmp_dir``, else ``$XDG_RUNTIME_DIR/libpod/tmp``. The
default network lives in memory (no .conflist) with ``default_subnet``.

A file that cannot be parsed is ignored, as podman would fail on it anyway;
nothing here raises.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SYSTEM_CONF_DIRS = ("/usr/share/containers", "/etc/containers")
ROOTFUL_RUN_DIR = "/run/containers/networks"
ROOTFUL_NETWORK_DIR = "/etc/containers/networks"
ROOTFUL_LOCK = "/run/lock/netavark.lock"
ROOTFUL_CNI_LOCK = "/run/lock/podman-cni.lock"  # podman >= 4.4
ROOTFUL_CNI_DATA_DIR = "/var/lib/cni/networks"  # host-local's default dataDir
CNI_LOCK_NAME = "cni.lock"  # in the CNI config dir: podman 4.0-4.3, and rootless
DEFAULT_NETWORK = "podman"
DEFAULT_SUBNET = "10.88.0.0/16"


@dataclass(frozen=True)
class PodmanSetup:
    """What one podman (root's, or one user's) uses."""

    rootless: bool
    uid: int
    graphroot: str
    runroot: str
    network_backend: str | None  # "netavark", "cni", or None: podman decides from disk
    network_dir: str
    ipam_db: str
    network_locks: tuple[str, ...]
    default_network: str
    runtime_dir: str  # /run (root) or $XDG_RUNTIME_DIR: runc/, crun/, podman/, netns/
    cni_config_dir: str
    cni_data_dir: str = ROOTFUL_CNI_DATA_DIR  # host-local's files: DIR/NETWORK/IP
    cni_locks: tuple[str, ...] = ()  # podman's network lock(s) under the CNI backend
    default_subnet: str = DEFAULT_SUBNET  # of the default network (no config file)


def read_setup(
    rootless: bool, uid: int, env: Mapping[str, str], home: str, etc: str = "/etc"
) -> PodmanSetup:
    """podman's paths for root (``rootless`` False) or for the user ``uid``."""
    runtime_dir = "/run"
    if rootless:
        runtime_dir = env.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    containers = _containers_conf(rootless, env, config_home, etc)
    network = containers.get("network", {})
    graphroot, runroot = _storage(rootless, uid, env, home, config_home, runtime_dir, etc)
    backend = _string(network.get("network_backend")) or _backend_file(graphroot)
    configured = _string(network.get("network_config_dir"))  # for either backend
    network_dir = configured or (
        os.path.join(graphroot, "networks") if rootless else ROOTFUL_NETWORK_DIR
    )
    in_dir = os.path.join(network_dir, "netavark.lock")
    cni_dir = configured or (
        os.path.join(config_home, "cni", "net.d") if rootless else f"{etc}/cni/net.d"
    )
    in_cni_dir = os.path.join(cni_dir, CNI_LOCK_NAME)
    cni_data_dir = ROOTFUL_CNI_DATA_DIR
    if rootless:  # the plugins run in the rootless-netns, with its own /var/lib/cni
        tmp_dir = _string(containers.get("engine", {}).get("tmp_dir"))
        tmp_dir = tmp_dir or os.path.join(runtime_dir, "libpod", "tmp")
        cni_data_dir = os.path.join(tmp_dir, "rootless-netns", ROOTFUL_CNI_DATA_DIR[1:])
    return PodmanSetup(
        rootless=rootless,
        uid=uid,
        graphroot=graphroot,
        runroot=runroot,
        network_backend=backend,
        network_dir=network_dir,
        ipam_db=os.path.join(runroot if rootless else "/run/containers", "networks", "ipam.db"),
        network_locks=(in_dir,) if rootless else (ROOTFUL_LOCK, in_dir),
        default_network=_string(network.get("default_network")) or DEFAULT_NETWORK,
        runtime_dir=runtime_dir,
        cni_config_dir=cni_dir,
        cni_data_dir=cni_data_dir,
        cni_locks=(in_cni_dir,) if rootless else (ROOTFUL_CNI_LOCK, in_cni_dir),
        default_subnet=_string(network.get("default_subnet")) or DEFAULT_SUBNET,
    )


def _containers_conf(
    rootless: bool, env: Mapping[str, str], config_home: str, etc: str
) -> dict[str, Any]:
    if env.get("CONTAINERS_CONF"):
        files = [env["CONTAINERS_CONF"]]
    else:
        dirs = [d.replace("/etc", etc, 1) for d in SYSTEM_CONF_DIRS]
        if rootless:
            dirs.append(os.path.join(config_home, "containers"))
        files = []
        for d in dirs:
            files.append(os.path.join(d, "containers.conf"))
            files += sorted(glob.glob(os.path.join(d, "containers.conf.d", "*.conf")))
    if env.get("CONTAINERS_CONF_OVERRIDE"):
        files.append(env["CONTAINERS_CONF_OVERRIDE"])
    merged: dict[str, Any] = {}
    for path in files:
        for section, table in _toml(path).items():
            if isinstance(table, dict):
                merged.setdefault(section, {}).update(table)
    return merged


def _storage(
    rootless: bool,
    uid: int,
    env: Mapping[str, str],
    home: str,
    config_home: str,
    runtime_dir: str,
    etc: str,
) -> tuple[str, str]:
    system = env.get("CONTAINERS_STORAGE_CONF") or _first_file(
        f"{etc}/containers/storage.conf", "/usr/share/containers/storage.conf"
    )
    system_storage = _toml(system).get("storage", {}) if system else {}
    if not rootless:
        graphroot = _string(system_storage.get("graphroot")) or "/var/lib/containers/storage"
        runroot = _string(system_storage.get("runroot")) or "/run/containers/storage"
        return graphroot, runroot
    user_file = os.path.join(config_home, "containers", "storage.conf")
    user = _toml(user_file).get("storage", {}) if not env.get("CONTAINERS_STORAGE_CONF") else {}
    data_home = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    graphroot = (
        _string(user.get("graphroot"))
        or _expand(_string(system_storage.get("rootless_storage_path")), uid, home, env)
        or os.path.join(data_home, "containers", "storage")
    )
    runroot = _string(user.get("runroot")) or os.path.join(runtime_dir, "containers")
    return os.path.expanduser(graphroot), runroot


def _expand(path: str, uid: int, home: str, env: Mapping[str, str]) -> str:
    """storage.conf's $UID, $HOME and $USER in rootless_storage_path."""
    return (
        path.replace("$UID", str(uid))
        .replace("$HOME", home)
        .replace("$USER", env.get("USER", str(uid)))
    )


def _backend_file(graphroot: str) -> str | None:
    """podman records its choice in ``$graphroot/defaultNetworkBackend``."""
    try:
        with open(os.path.join(graphroot, "defaultNetworkBackend"), encoding="utf-8") as f:
            value = f.read().strip()
    except OSError:
        return None
    return value if value in ("netavark", "cni") else None


def _first_file(*paths: str) -> str | None:
    return next((p for p in paths if os.path.isfile(p)), None)


def _toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""
