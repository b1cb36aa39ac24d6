"""Which interface to probe for a container network, from podman's (or CNI's) config.

- netavark: ``/etc/containers/networks/NAME.json``: ``driver`` ("bridge", "macvlan",
  "ipvlan"), ``network_interface`` (the bridge, e.g. "podman1"; for macvlan/ipvlan the
  host's parent interface), ``internal``. podman's default network "podman" has no file:
  a bridge named "podman0".
- CNI: ``/etc/cni/net.d/*.conflist`` whose ``name`` is the network, a plugin of
  ``type`` "bridge" names it in ``bridge`` (default "cni0"); podman's default network
  is the bridge "cni-podman0".

A bridge that does not exist is a positive statement: netavark removes the bridge when
the last container leaves the network, so nothing is attached and every address is
silent. A macvlan/ipvlan network cannot be probed from the host (see ``_NOT_PROBED``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ipamguard.ethtool import ethtool_driver
from ipamguard.liveness.probe import (
    IMPOSSIBLE,
    SILENT,
    ProbeResult,
    probe_addresses,
)

PODMAN_NETWORK_DIR = "/etc/containers/networks"
PODMAN_DEFAULT_NETWORK = "podman"
PODMAN_DEFAULT_BRIDGE = "podman0"
CNI_CONFIG_DIR = "/etc/cni/net.d"
CNI_DEFAULT_BRIDGE = "cni0"  # the bridge plugin's default
CNI_PODMAN_DEFAULT_BRIDGE = "cni-podman0"  # podman's default network under CNI

BridgeOutcome = Literal["probe", "silent", "impossible"]

_NOT_PROBED = {
    "macvlan": (
        "macvlan network: the host cannot reach its own macvlan children through the "
        "parent interface{parent}, so a probe from the host proves nothing; not probed"
    ),
    "ipvlan": (
        "ipvlan network: its children share the parent interface's MAC{parent} and the "
        "host cannot reach them through it; not probed"
    ),
}

SIOCGIFINDEX = 0x8933


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """Where (and whether) to probe the addresses of one network."""

    network: str
    driver: str  # "bridge", "macvlan", "ipvlan", ...; "" when no config was found
    interface: str | None  # the bridge (macvlan/ipvlan: the parent, if named)
    internal: bool
    source: str  # the config file, or why there is none
    outcome: BridgeOutcome  # "probe" the interface, or every address is silent/impossible
    reason: str = ""  # why not "probe" (one line)


def bridge_for_network(network_dir: str | os.PathLike[str], name: str) -> BridgeInfo:
    """The bridge of netavark network ``name``, from ``network_dir/NAME.json``."""
    path, config, problem = _find_config(Path(network_dir), (".json",), name)
    if config is None and problem is None and name == PODMAN_DEFAULT_NETWORK:
        source = "podman's default network (no config file)"
        return _bridge(name, PODMAN_DEFAULT_BRIDGE, False, source)
    if config is None:
        return _impossible(name, "", str(path or network_dir), problem or "")
    source = str(path)
    driver = config.get("driver", "bridge")
    interface = config.get("network_interface")
    internal = config.get("internal") is True
    if not isinstance(driver, str):
        return _impossible(name, "", source, f"{source}: driver is not a string")
    if not isinstance(interface, str) or not interface:
        interface = None
    if driver != "bridge":
        return _other_driver(name, driver, interface, internal, source)
    if interface is None:
        return _impossible(name, driver, source, f"{source} names no bridge", internal)
    return _bridge(name, interface, internal, source)


def cni_bridge_for_network(config_dir: str | os.PathLike[str], name: str) -> BridgeInfo:
    """The bridge of CNI network ``name``, from the ``.conflist`` in ``config_dir`` naming it."""
    suffixes = (".conflist", ".conf", ".json")
    path, config, problem = _find_config(Path(config_dir), suffixes, name, by_file_name=False)
    if config is None and problem is None and name == PODMAN_DEFAULT_NETWORK:
        source = "podman's default CNI network (no config file)"
        return _bridge(name, CNI_PODMAN_DEFAULT_BRIDGE, False, source)
    if config is None:
        return _impossible(name, "", str(path or config_dir), problem or "")
    source = str(path)
    plugins = config.get("plugins")
    if not isinstance(plugins, list):
        plugins = [config]  # a single-plugin .conf
    for plugin in plugins:
        if not isinstance(plugin, Mapping):
            continue
        kind, master = plugin.get("type"), plugin.get("master")
        parent = master if isinstance(master, str) and master else None
        if kind == "bridge":
            bridge = plugin.get("bridge")
            interface = bridge if isinstance(bridge, str) and bridge else CNI_DEFAULT_BRIDGE
            return _bridge(name, interface, False, source)
        if isinstance(kind, str) and kind in _NOT_PROBED:
            return _other_driver(name, kind, parent, False, source)
    return _impossible(name, "", source, f"{source} has no bridge, macvlan or ipvlan plugin")


def probe_network(
    bridge: BridgeInfo, addresses: Sequence[str], *, timeout: float = 0.5, attempts: int = 3
) -> dict[str, ProbeResult]:
    """Probe addresses on the network's bridge, or give each the bridge's outcome."""
    if bridge.outcome == "probe" and bridge.interface is not None:
        return probe_addresses(bridge.interface, addresses, timeout=timeout, attempts=attempts)
    status = SILENT if bridge.outcome == "silent" else IMPOSSIBLE
    return {a: ProbeResult(a, status, bridge.reason) for a in addresses}


def network_prober(
    config_dir: str | os.PathLike[str] = PODMAN_NETWORK_DIR,
    *,
    cni: bool = False,
    timeout: float = 0.5,
    attempts: int = 3,
) -> Callable[[str, Sequence[str]], dict[str, ProbeResult]]:
    """A ``(network name, addresses) -> results`` function over netavark (or CNI) configs."""
    find = cni_bridge_for_network if cni else bridge_for_network

    def prober(network: str, addresses: Sequence[str]) -> dict[str, ProbeResult]:
        bridge = find(config_dir, network)
        return probe_network(bridge, addresses, timeout=timeout, attempts=attempts)

    return prober


def probe_networks(
    wanted: Mapping[str, Sequence[str]],
    config_dir: str | os.PathLike[str] = PODMAN_NETWORK_DIR,
    *,
    cni: bool = False,
    timeout: float = 0.5,
    attempts: int = 3,
) -> dict[str, dict[str, ProbeResult]]:
    """Probe the addresses of several networks (network -> addresses) at once: one
    thread per network, so the whole takes about one ``timeout``, not one per network."""
    prober = network_prober(config_dir, cni=cni, timeout=timeout, attempts=attempts)
    if len(wanted) <= 1:
        return {network: prober(network, addresses) for network, addresses in wanted.items()}
    with ThreadPoolExecutor(max_workers=min(len(wanted), 16)) as pool:
        futures = {n: pool.submit(prober, n, addresses) for n, addresses in wanted.items()}
        return {network: future.result() for network, future in futures.items()}


# --------------------------------------------------------------------------- configs


def _find_config(
    directory: Path, suffixes: tuple[str, ...], name: str, *, by_file_name: bool = True
) -> tuple[Path | None, dict[str, Any] | None, str | None]:
    """(path, config, None) for the config of ``name``; (path, None, why) if it is unreadable;
    (None, None, None) if no file names podman's default network; else (None, None, why)."""
    if by_file_name and "/" not in name and name not in (".", ".."):
        path = directory / f"{name}.json"
        found = _read_config(path)
        if found is not None:
            return (path, found, None) if isinstance(found, dict) else (path, None, found)
    try:
        candidates = sorted(p for p in directory.iterdir() if p.suffix in suffixes)
    except FileNotFoundError:
        candidates = []
    except OSError as error:
        return None, None, f"cannot list {directory}: {error.strerror}"
    for path in candidates:
        found = _read_config(path)
        if isinstance(found, dict) and found.get("name") == name:
            return path, found, None
    if name == PODMAN_DEFAULT_NETWORK:
        return None, None, None
    return None, None, f"no config for network {name!r} in {directory}"


def _read_config(path: Path) -> dict[str, Any] | str | None:
    """The config as a dict, why it is unreadable, or None if the file does not exist."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{path} is unreadable: {error}"
    if not isinstance(config, dict):
        return f"{path} is not a JSON object"
    return config


def _impossible(
    name: str, driver: str, source: str, reason: str, internal: bool = False
) -> BridgeInfo:
    return BridgeInfo(name, driver, None, internal, source, "impossible", reason)


def _other_driver(
    name: str, driver: str, parent: str | None, internal: bool, source: str
) -> BridgeInfo:
    template = _NOT_PROBED.get(driver, f"{driver} network: only bridges are probed")
    reason = template.format(parent=f" {parent}" if parent else "")
    return BridgeInfo(name, driver, parent, internal, source, "impossible", reason)


# --------------------------------------------------------------------------- the interface


def _bridge(name: str, interface: str, internal: bool, source: str) -> BridgeInfo:
    """A bridge network: probe it, unless its bridge is gone or is not a bridge."""
    problem = _interface_problem(interface)
    if problem is None:
        return BridgeInfo(name, "bridge", interface, internal, source, "probe")
    outcome, reason = problem
    return BridgeInfo(name, "bridge", interface, internal, source, outcome, reason)


def _interface_problem(interface: str) -> tuple[BridgeOutcome, str] | None:
    """None if ``interface`` is a bridge of this network namespace; else the outcome."""
    if not interface.isprintable() or "/" in interface or len(interface.encode()) >= 16:
        return "impossible", f"{interface!r} is not a valid interface name"
    try:
        exists = _interface_exists(interface)
    except OSError as error:
        return "impossible", f"cannot ask whether {interface} exists: {error.strerror}"
    if not exists:
        links = list(_local_links())
        if links and all(link == "lo" for link in links):
            return "impossible", (
                f"bridge {interface} does not exist, but this process sees only a loopback "
                "interface (a private network namespace?)"
            )
        if not links:
            return "impossible", f"bridge {interface} does not exist, and no link is visible"
        return "silent", f"bridge {interface} does not exist: no container is attached"
    driver = ethtool_driver(interface)
    if driver != "bridge":
        what = f"a {driver} interface" if driver else "an interface of unknown kind"
        return "impossible", f"{interface} is {what}, not a bridge"
    return None


def _interface_exists(interface: str) -> bool:
    """SIOCGIFINDEX on an AF_UNIX socket: works in a RestrictAddressFamilies=AF_UNIX sandbox."""
    request = struct.pack("16s24x", interface.encode())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, request)
        except OSError as error:
            if error.errno == errno.ENODEV:
                return False
            raise
    return True


def _local_links() -> Iterator[str]:
    """The links of this process's network namespace (/proc/self/net/dev); none if unreadable."""
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return
    for line in lines:
        yield line.split(":", 1)[0].strip()
