"""Address space per subnet: podman's rule for usable addresses, gateways from configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipamguard.capacity import (
    SubnetCapacity,
    low_subnets,
    read_gateways,
    subnet_capacities,
    usable_addresses,
)
from ipamguard.ipam.model import Allocation, IpamState, Network, Subnet


@pytest.mark.parametrize(
    ("cidr", "gateway", "size"),
    [
        ("10.88.0.0/24", None, 254),  # minus network and broadcast
        ("10.88.0.0/24", "10.88.0.1", 253),  # and the gateway
        ("10.88.0.0/24", "10.88.0.255", 254),  # the broadcast address is already out
        ("10.88.0.0/24", "10.99.0.1", 254),  # a gateway outside the subnet
        ("10.88.0.0/24", "fd00::1", 254),  # of the other family
        ("10.88.0.0/24", "not-an-ip", 254),
        ("10.88.0.0/16", "10.88.0.1", 65533),
        ("10.88.0.0/30", "10.88.0.1", 1),
        ("10.88.0.0/31", None, 0),  # podman: first + 1 .. last - 1 is empty
        ("10.88.0.0/32", None, 0),
        ("fd00::/64", "fd00::1", 2**64 - 2),  # IPv6: no broadcast address
        ("fd00::/120", None, 255),
        ("fd00::/127", None, 1),
        ("fd00::/128", None, 0),
    ],
)
def test_usable_addresses_follow_podmans_allocator(
    cidr: str, gateway: str | None, size: int
) -> None:
    assert usable_addresses(cidr, gateway) == size


def state() -> IpamState:
    def subnet(cidr: str, n: int, net: str) -> Subnet:
        base = cidr.rsplit(".", 1)[0]
        allocations = [Allocation(net, cidr, f"{base}.{i + 2}", f"c{i}") for i in range(n)]
        return Subnet(cidr, allocations=allocations)

    return IpamState(
        txid=7,
        networks=[
            Network("a", [subnet("10.1.0.0/24", 240, "a"), subnet("10.2.0.0/24", 3, "a")]),
            Network("b", [subnet("10.3.0.0/28", 0, "b")]),
        ],
    )


def test_subnet_capacities_and_the_low_ones() -> None:
    gateways = {("a", "10.1.0.0/24"): "10.1.0.1", ("b", "10.3.0.0/28"): "10.3.0.1"}
    found = subnet_capacities(state(), gateways, "netavark")
    assert [(c.network, c.subnet, c.size, c.allocated, c.free) for c in found] == [
        ("a", "10.1.0.0/24", 253, 240, 13),
        ("a", "10.2.0.0/24", 254, 3, 251),
        ("b", "10.3.0.0/28", 13, 0, 13),
    ]
    assert found[0].gateway == "10.1.0.1" and found[1].gateway is None
    assert found[0].free_percent == pytest.approx(100 * 13 / 253)
    assert low_subnets(found, 10) == [found[0]]  # 5.1 % free
    assert low_subnets(found, 0) == []  # 0: never
    assert low_subnets(found, 5.1) == []  # under, not at
    assert found[0].describe() == "a 10.1.0.0/24: 13 of 253 addresses free (5.1 %)"
    document = found[0].to_dict(10)
    assert document["low"] is True and document["size"] == 253 and document["free"] == 13


def test_an_overfull_or_empty_subnet() -> None:
    full = SubnetCapacity("netavark", "n", "10.0.0.0/30", size=1, allocated=2)
    assert (full.free, full.free_percent, full.is_low(10)) == (0, 0.0, True)
    empty = SubnetCapacity("netavark", "n", "10.0.0.0/31", size=0, allocated=0)
    assert empty.free_percent == 0.0


def test_gateways_come_from_netavarks_configs(tmp_path: Path) -> None:
    def config(name: str, document: object) -> None:
        (tmp_path / f"{name}.json").write_text(json.dumps(document))

    config("a", {"name": "a", "subnets": [
        {"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"},
        {"subnet": "fd00:0:0:1::/64", "gateway": "fd00:0:0:1::1"},
        {"subnet": "10.9.0.0/24"},  # no gateway (e.g. an internal network)
    ]})  # fmt: skip
    config("file-name", {"subnets": [{"subnet": "10.4.0.0/24", "gateway": "10.4.0.1"}]})
    config("odd", {"name": "odd", "subnets": "10.5.0.0/24"})
    config("bad-subnet", {"name": "x", "subnets": [{"subnet": "nonsense", "gateway": "1.2.3.4"}]})
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "ignored.conflist").write_text("{}")
    assert read_gateways(str(tmp_path)) == {
        ("a", "10.1.0.0/24"): "10.1.0.1",
        ("a", "fd00:0:0:1::/64"): "fd00:0:0:1::1",
        ("file-name", "10.4.0.0/24"): "10.4.0.1",
    }
    assert read_gateways(str(tmp_path / "missing")) == {}
    assert read_gateways(None) == {}
