"""Which bridges belong to container networking, from the tools' own configs.

- podman/netavark: ``/etc/containers/networks/*.json``, a network with
  ``"driver": "bridge"`` names its bridge in ``"network_interface"`` (other
  drivers such as macvlan name the *host's* parent interface there: not ours).
- CNI: ``/etc/cni/net.d/*.conflist`` (or a single-plugin ``*.conf``/``*.json``),
  a plugin of ``"type": "bridge"`` names it in ``"bridge"`` (default ``cni0``).
- Names the tools pick by default (podman0, cni-podman0, docker0, br-<12 hex>)
  are recognised by name too, since defaults are often not written to disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PODMAN_NETWORK_DIRS = (Path("/etc/containers/networks"),)
CNI_CONFIG_DIRS = (Path("/etc/cni/net.d"),)

CNI_DEFAULT_BRIDGE = "cni0"

# Bridge names container tools choose by themselves, with the networkd [Match]
# glob that covers the whole family (used by the fix).
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"podman[0-9]+"), "podman[0-9]*"),
    (re.compile(r"cni-podman[0-9]+"), "cni-podman[0-9]*"),
    (re.compile(r"cni0"), "cni0"),
    (re.compile(r"docker0"), "docker0"),
    # docker's user networks: "br-" + the first 12 hex digits of the network ID.
    # Spelled out so that an operator's own "br-lan" is never matched.
    (re.compile(r"br-[0-9a-f]{12}"), "br-" + "[0-9a-f]" * 12),
)


def family_pattern(bridge: str) -> str | None:
    """The networkd glob for the family of a default-named bridge, else None."""
    for regex, pattern in _FAMILIES:
        if regex.fullmatch(bridge):
            return pattern
    return None


@dataclass
class BridgeConfigs:
    """Bridges named by container network configs, and configs we could not read."""

    bridges: dict[str, str] = field(default_factory=dict)  # bridge -> where it was named
    unreadable: list[str] = field(default_factory=list)  # "path: reason"


def bridges_of_podman_config(config: Mapping[str, Any]) -> list[str]:
    """The bridge a podman network config names (empty for non-bridge drivers)."""
    interface = config.get("network_interface")
    if config.get("driver", "bridge") == "bridge" and isinstance(interface, str) and interface:
        return [interface]
    return []


def bridges_of_cni_config(config: Mapping[str, Any]) -> list[str]:
    """The bridges of a CNI ``.conflist`` (``plugins``) or single-plugin ``.conf``."""
    plugins = config.get("plugins")
    if not isinstance(plugins, list):
        plugins = [config]
    bridges = []
    for plugin in plugins:
        if isinstance(plugin, Mapping) and plugin.get("type") == "bridge":
            name = plugin.get("bridge")
            bridges.append(name if isinstance(name, str) and name else CNI_DEFAULT_BRIDGE)
    return bridges


def read_bridge_configs(
    podman_dirs: Iterable[Path] = PODMAN_NETWORK_DIRS,
    cni_dirs: Iterable[Path] = CNI_CONFIG_DIRS,
) -> BridgeConfigs:
    """Read every podman and CNI network config; missing directories are fine."""
    found = BridgeConfigs()
    for directory in podman_dirs:
        for path in _config_files(directory, (".json",)):
            _collect(found, path, "podman network", bridges_of_podman_config)
    for directory in cni_dirs:
        for path in _config_files(directory, (".conflist", ".conf", ".json")):
            _collect(found, path, "CNI network", bridges_of_cni_config)
    return found


def _config_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix in suffixes and p.is_file())
    except OSError:
        return []


def _collect(
    found: BridgeConfigs,
    path: Path,
    what: str,
    extract: Callable[[Mapping[str, Any]], list[str]],
) -> None:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        found.unreadable.append(f"{path}: {error}")
        return
    if not isinstance(config, dict):
        found.unreadable.append(f"{path}: not a JSON object")
        return
    name = config.get("name", path.stem)
    for bridge in extract(config):
        found.bridges.setdefault(bridge, f"{what} {name!r} ({path})")
