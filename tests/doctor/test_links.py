"""Reading links from a /sys/class/net tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipamguard.doctor.links import Link, SysfsLinks, peer_is_local
from ipamguard.errors import LinkReadError
from ipamguard.ethtool import DriverReader, ethtool_driver


def fake_link(root: Path, name: str, index: int, iflink: int, **files: str) -> None:
    path = root / name
    path.mkdir(parents=True)
    (path / "ifindex").write_text(f"{index}\n")
    (path / "iflink").write_text(f"{iflink}\n")
    defaults = {
        "flags": "0x1003",  # IFF_UP | IFF_BROADCAST | IFF_MULTICAST
        "operstate": "up",
        "address": "02:AA:BB:CC:DD:EE",
        "type": "1",  # ARPHRD_ETHER
        "uevent": f"INTERFACE={name}\nIFINDEX={index}\n",
    }
    for key, value in {**defaults, **files}.items():
        (path / key).write_text(value + "\n")


def test_sysfs_reader(tmp_path: Path) -> None:
    root = tmp_path / "net"
    fake_link(root, "podman1", 3, 3, uevent="DEVTYPE=bridge\nINTERFACE=podman1\n")
    (root / "podman1" / "bridge").mkdir()
    fake_link(root, "veth0", 4, 17, flags="0x1002", operstate="lowerlayerdown")
    os.symlink("../podman1", root / "veth0" / "master")
    fake_link(root, "lo", 1, 1, type="772")
    (root / "bonding_masters").write_text("")  # not a link directory
    drivers = {"veth0": "veth", "podman1": "bridge"}
    links = {link.name: link for link in SysfsLinks(root, drivers.get).links()}
    assert sorted(links) == ["lo", "podman1", "veth0"]
    assert links["veth0"] == Link(
        name="veth0",
        index=4,
        peer_index=17,
        kind="veth",
        driver="veth",
        master="podman1",
        admin_up=False,
        operstate="lowerlayerdown",
        mac="02:aa:bb:cc:dd:ee",
        link_type="ether",
    )
    assert links["podman1"].kind == "bridge" and links["podman1"].link_type == "bridge"
    assert links["lo"].link_type == "loopback" and links["lo"].admin_up
    assert not peer_is_local(links["veth0"], list(links.values()))


def test_missing_sysfs_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LinkReadError, match="cannot list"):
        SysfsLinks(tmp_path / "absent").links()


def test_ethtool_driver_of_an_absent_link_is_unknown() -> None:
    assert ethtool_driver("no-such-link0") is None


def test_one_socket_asks_the_driver_of_many_links() -> None:
    """The reader of every link asks ethtool through one socket: the same answers."""
    reader = DriverReader()
    try:
        assert reader("lo") == ethtool_driver("lo")
        sock = reader.sock
        assert sock is not None and reader("no-such-link0") is None and reader.sock is sock
    finally:
        reader.close()
    assert reader.sock is None
