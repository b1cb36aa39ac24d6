"""Address space: how many addresses each subnet has left, and which run out.

podman hands out (containers/common, ``getFreeIPFromBucket``) every address of a
subnet but its network address, the last address of an IPv4 subnet (broadcast) and
the network's gateway. ``size`` counts exactly those, ``allocated`` the IP keys of
the subnet in the store, ``free`` the difference. A ``lease_range`` in the network
config limits only the dynamic choice (``--ip`` may take any address), so it is
not counted: a subnet whose range is full but whose rest is free is not "low".

``subnet_capacities`` is pure; ``read_gateways`` reads podman's network configs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ipamguard.ipam.model import IpamState
from ipamguard.ipam.netconfig import network_configs

GatewayKey = tuple[str, str]  # (network name, subnet CIDR as in ipam.db)


@dataclass(frozen=True, slots=True)
class SubnetCapacity:
    """One subnet of one network: its usable addresses and how many are allocated."""

    store: str
    network: str
    subnet: str
    size: int
    allocated: int
    gateway: str | None = None

    @property
    def free(self) -> int:
        return max(self.size - self.allocated, 0)

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.size if self.size else 0.0

    def is_low(self, percent: float) -> bool:
        """Fewer than ``percent`` % of its addresses are free (0: never)."""
        return percent > 0 and self.free_percent < percent

    def describe(self) -> str:
        """'net 10.88.0.0/24: 3 of 253 addresses free (1.2 %)'."""
        return (
            f"{self.network} {self.subnet}: {self.free} of {self.size} addresses free "
            f"({self.free_percent:.1f} %)"
        )

    def to_dict(self, percent: float | None = None) -> dict[str, object]:
        document: dict[str, object] = {
            "store": self.store,
            "network": self.network,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "size": self.size,
            "allocated": self.allocated,
            "free": self.free,
            "free_percent": round(self.free_percent, 3),
        }
        if percent is not None:
            document["low"] = self.is_low(percent)
        return document


def usable_addresses(cidr: str, gateway: str | None = None) -> int:
    """How many addresses of ``cidr`` podman can allocate (see the module docstring)."""
    net = ipaddress.ip_network(cidr, strict=False)
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    size = max(last - first + 1, 0)
    if gateway is not None and size:
        try:
            address = ipaddress.ip_address(gateway)
        except ValueError:
            return size
        if address.version == net.version and first <= int(address) <= last:
            size -= 1
    return size


def subnet_capacities(
    state: IpamState, gateways: Mapping[GatewayKey, str], store: str = "netavark"
) -> list[SubnetCapacity]:
    """Every subnet bucket of ``state`` with its size and allocations."""
    found = []
    for network in state.networks:
        for subnet in network.subnets:
            gateway = gateways.get((network.name, _canonical(subnet.cidr)))
            found.append(
                SubnetCapacity(
                    store,
                    network.name,
                    subnet.cidr,
                    usable_addresses(subnet.cidr, gateway),
                    len(subnet.allocations),
                    gateway,
                )
            )
    return found


def low_subnets(capacities: Iterable[SubnetCapacity], percent: float) -> list[SubnetCapacity]:
    return [c for c in capacities if c.is_low(percent)]


def read_gateways(network_dir: str | None) -> dict[GatewayKey, str]:
    """(network, subnet) -> gateway, from netavark's ``NAME.json`` configs.

    A missing directory or an unreadable config gives no gateway (its subnets then
    count one address more than podman hands out): never an error.
    """
    configs = network_configs(network_dir) if network_dir is not None else None
    gateways: dict[GatewayKey, str] = {}
    for name, config in configs or ():
        if config is not None:
            gateways.update(_gateways_of(config, name))
    return gateways


def _gateways_of(config: Mapping[str, object], name: str) -> dict[GatewayKey, str]:
    subnets = config.get("subnets")
    found: dict[GatewayKey, str] = {}
    for item in subnets if isinstance(subnets, Sequence) else ():
        if not isinstance(item, Mapping):
            continue
        cidr, gateway = item.get("subnet"), item.get("gateway")
        if isinstance(cidr, str) and isinstance(gateway, str):
            try:
                found[(name, _canonical(cidr))] = gateway
            except ValueError:
                continue
    return found


def _canonical(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))
