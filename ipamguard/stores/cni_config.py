"""CNI network configs as podman reads them: which networks exist, with which ranges.

podman (containers/common libnetwork/cni) loads every ``*.conflist`` of its CNI
config dir; a network is the list's ``name``; a second list of the same name is
skipped; its default network has no file (it lives in memory, ``default_subnet``,
gateway its first address). The host-local plugin's ranges (plugins
ipam/host-local/backend/allocator/config.go, range.go) are ``ipam.ranges``, a list of
range sets (the N of ``last_reserved_ip.N`` is a range set's index), with an
old-style single range (``ipam.subnet``, ``rangeStart``...) put first. A range is
``subnet`` with ``rangeStart`` (default: the subnet's second address) and
``rangeEnd`` (default: the last address, but the broadcast for IPv4), both
inclusive. A config that cannot be read never makes a network look deleted: the
result is then ``complete`` False.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
HOST_LOCAL = "host-local"


@dataclass(frozen=True, slots=True)
class Range:
    """One host-local range: addresses ``start`` to ``end`` (inclusive) of ``subnet``."""

    subnet: IPNetwork
    start: int
    end: int

    def contains(self, address: IPAddress) -> bool:
        return address.version == self.subnet.version and self.start <= int(address) <= self.end


@dataclass(frozen=True, slots=True)
class CniNetwork:
    """One network podman knows under the CNI backend."""

    name: str
    source: str  # the .conflist, or why there is none (the default network)
    range_sets: tuple[tuple[Range, ...], ...] = ()
    problem: str | None = None  # why its ranges are unknown (its addresses: malformed)
    data_dir: str | None = None  # host-local's ``dataDir``, when the config sets one

    def range_for(self, address: IPAddress) -> Range | None:
        for range_set in self.range_sets:
            for candidate in range_set:
                if candidate.contains(address):
                    return candidate
        return None

    def subnets(self) -> list[IPNetwork]:
        """Every subnet of its ranges, in config order, each once."""
        found: list[IPNetwork] = []
        for range_set in self.range_sets:
            found.extend(r.subnet for r in range_set if r.subnet not in found)
        return found


@dataclass
class CniConfigs:
    networks: dict[str, CniNetwork] = field(default_factory=dict)
    complete: bool = True  # every .conflist was read (else nothing counts as deleted)
    problems: list[str] = field(default_factory=list)


def read_cni_configs(
    config_dir: str, default_network: str = "podman", default_subnet: str = "10.88.0.0/16"
) -> CniConfigs:
    """The networks of ``config_dir`` (a missing or unreadable one: ``complete`` False)."""
    configs = CniConfigs()
    try:
        names = sorted(n for n in os.listdir(config_dir) if n.endswith(".conflist"))
    except OSError as error:
        configs.complete = False
        configs.problems.append(f"cannot list {config_dir}: {error.strerror}")
        names = []
    for name in names:
        path = os.path.join(config_dir, name)
        try:
            with open(path, "rb") as file:
                document = json.loads(file.read())
        except (OSError, ValueError) as error:
            configs.complete = False
            configs.problems.append(f"{path} is unreadable: {error}")
            continue
        network_name = document.get("name") if isinstance(document, dict) else None
        if not isinstance(network_name, str) or not network_name:
            configs.complete = False
            configs.problems.append(f"{path} names no network")
            continue
        if network_name not in configs.networks:  # podman skips a second one
            configs.networks[network_name] = network_from_config(network_name, path, document)
    if default_network not in configs.networks:
        source = "podman's default network (no config file)"
        ipam = {"type": HOST_LOCAL, "ranges": [[{"subnet": default_subnet}]]}
        configs.networks[default_network] = network_from_ipam(default_network, source, ipam)
    return configs


def network_from_config(name: str, source: str, document: Mapping[str, Any]) -> CniNetwork:
    """The network of one config list (or single-plugin config) ``document``."""
    plugins = document.get("plugins")
    if not isinstance(plugins, list):
        plugins = [document]
    for plugin in plugins:
        if isinstance(plugin, Mapping) and isinstance(plugin.get("ipam"), Mapping):
            return network_from_ipam(name, source, plugin["ipam"])
    return CniNetwork(name, source, problem=f"{source} has no IPAM configuration")


def network_from_ipam(name: str, source: str, ipam: Mapping[str, Any]) -> CniNetwork:
    kind = ipam.get("type")
    if kind != HOST_LOCAL:
        return CniNetwork(name, source, problem=f"{source}: IPAM {kind!r} is not host-local")
    data_dir = ipam.get("dataDir") if isinstance(ipam.get("dataDir"), str) else None
    raw_sets: list[Any] = []
    if ipam.get("subnet") is not None:  # an old-style single range comes first
        raw_sets.append([ipam])
    ranges = ipam.get("ranges")
    if ranges is not None and not isinstance(ranges, list):
        return CniNetwork(name, source, problem=f"{source}: ranges is not a list")
    raw_sets.extend(ranges or [])
    range_sets = []
    for index, raw_set in enumerate(raw_sets):
        try:
            range_sets.append(_range_set(raw_set))
        except ValueError as error:
            why = f"{source}: range set {index}: {error}"
            return CniNetwork(name, source, problem=why, data_dir=data_dir)
    if not range_sets:
        return CniNetwork(name, source, problem=f"{source}: no IP ranges", data_dir=data_dir)
    return CniNetwork(name, source, tuple(range_sets), data_dir=data_dir)


def _range_set(raw: Any) -> tuple[Range, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("not a list of ranges")
    found = tuple(_range(item) for item in raw)
    if len({r.subnet.version for r in found}) > 1:
        raise ValueError("mixed address families")
    return found


def _range(raw: Any) -> Range:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("subnet"), str):
        raise ValueError("a range without a subnet")
    try:
        subnet = ipaddress.ip_network(raw["subnet"])  # host bits set: refused, as CNI does
    except ValueError as error:
        raise ValueError(str(error)) from None
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise ValueError(f"{subnet} is too small to allocate from")
    first = int(subnet.network_address) + 1
    last = int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)
    start = _bound(raw.get("rangeStart"), subnet, first)
    end = _bound(raw.get("rangeEnd"), subnet, last)
    return Range(subnet, start, end)


def _bound(value: object, subnet: IPNetwork, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address not in subnet:
        raise ValueError(f"{value!r} is not an address of {subnet}")
    return int(address)
