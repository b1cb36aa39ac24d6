"""The pure analysis: container links, bridge health, networkd findings, exit codes."""

from __future__ import annotations

from pathlib import Path

from ipamguard.doctor.analysis import (
    BRIDGE_DOWN,
    INFO,
    MANAGED,
    NETWORKD_NOT_RUNNING,
    NETWORKD_UNKNOWN,
    PROBLEM,
    UNKNOWN,
    VETH_DOWN,
    VETH_NOT_ON_BRIDGE,
    ContainerLinks,
    Finding,
    check_bridge_health,
    check_networkd,
    exit_code,
    find_container_links,
)
from ipamguard.doctor.matching import parse_network_file
from ipamguard.doctor.networkd import NetworkdStatus

from .factories import bridge, ether, networkd, veth

CONFIGURED = {"mynet0": "podman network 'mynet' (/etc/containers/networks/mynet.json)"}
CATCH_ALL = parse_network_file(Path("/etc/systemd/network/99-all.network"), "[Match]\nName=*\n")


def test_container_links_from_configs_default_names_and_veths() -> None:
    links = [
        ether("eth0", 2, master="br-lan"),
        bridge("br-lan", 3),  # the operator's own bridge: not ours
        bridge("mynet0", 4),  # named by a podman config
        bridge("podman0", 5),  # podman's default name
        bridge("br-0123456789ab", 6),  # docker's user-network name
        veth("veth0", 7, master="mynet0"),
        veth("veth1", 8, master="br-lan"),  # someone else's veth on someone else's bridge
        veth("veth2", 9),  # on no bridge, peer elsewhere: a container's lost veth
        veth("ve-nspawn", 10),  # nspawn routes, not bridges: not ours
        veth("vethA", 11, peer=12),  # both ends here: not a container's
        veth("vethB", 12, peer=11),
    ]
    container = find_container_links(links, CONFIGURED)
    assert container.bridges == {
        "mynet0": CONFIGURED["mynet0"],
        "podman0": "default name of a container bridge",
        "br-0123456789ab": "default name of a container bridge",
    }
    assert container.veths == {"veth0": "mynet0", "veth2": None}


def test_healthy_bridges_have_no_findings() -> None:
    links = [bridge("podman1", 3), veth("veth0", 4, master="podman1")]
    assert check_bridge_health(links, find_container_links(links, {})) == []


def test_veth_off_its_bridge_down_and_bridge_down() -> None:
    links = [
        bridge("podman1", 3, up=False),
        veth("veth0", 4, master="podman1", up=False),
        veth("veth1", 5),
    ]
    findings = check_bridge_health(links, find_container_links(links, {}))
    assert [(f.kind, f.link, f.severity) for f in findings] == [
        (VETH_DOWN, "veth0", PROBLEM),
        (VETH_NOT_ON_BRIDGE, "veth1", PROBLEM),
        (BRIDGE_DOWN, "podman1", PROBLEM),
    ]
    assert findings[1].hint is not None and "master podman1" in findings[1].hint


def test_networkd_managing_container_links_with_the_file_that_caught_them() -> None:
    links = [ether("eth0", 2), bridge("podman1", 3), veth("veth0", 4, master="podman1")]
    container = find_container_links(links, {})
    status = networkd(
        {"eth0": "configured", "podman1": "configuring", "veth0": "configured"},
        files={"podman1": "/run/systemd/network/99-all.network"},  # networkd says
        links=links,
    )
    findings = check_networkd(links, container, status, [CATCH_ALL])
    assert [(f.kind, f.link, f.network_file) for f in findings] == [
        (MANAGED, "podman1", "/run/systemd/network/99-all.network"),
        (MANAGED, "veth0", "/etc/systemd/network/99-all.network"),  # our own matching
    ]
    assert "state configuring" in findings[0].message


def test_unmanaged_and_lingering_links_are_fine() -> None:
    links = [bridge("podman1", 3), veth("veth0", 4, master="podman1")]
    status = networkd({"podman1": "unmanaged", "veth0": "linger"}, links=links)
    assert check_networkd(links, find_container_links(links, {}), status, [CATCH_ALL]) == []


def test_files_that_may_match_before_the_catching_file_are_named() -> None:
    maybe = parse_network_file(
        Path("/etc/systemd/network/50-host.network"), "[Match]\nName=*\nHost=build1\n"
    )
    later = parse_network_file(
        Path("/etc/systemd/network/zz-later.network"), "[Match]\nName=*\nHost=x\n"
    )
    links = [bridge("podman1", 3)]
    status = networkd({"podman1": "configured"}, links=links)
    (finding,) = check_networkd(
        links, find_container_links(links, {}), status, [maybe, CATCH_ALL, later]
    )
    assert finding.network_file == "/etc/systemd/network/99-all.network"
    assert finding.may_match == ("/etc/systemd/network/50-host.network",)


def test_networkd_not_running_or_unknown() -> None:
    container = ContainerLinks()
    (off,) = check_networkd([], container, NetworkdStatus(running=False), [])
    assert (off.kind, off.severity) == (NETWORKD_NOT_RUNNING, INFO)
    unknown = NetworkdStatus(running=None, detail="cannot reach the D-Bus system bus")
    (blind,) = check_networkd([], container, unknown, [])
    assert (blind.kind, blind.severity) == (NETWORKD_UNKNOWN, UNKNOWN)
    assert "D-Bus" in blind.message


def test_exit_codes() -> None:
    problem = Finding(MANAGED, PROBLEM, "x")
    unknown = Finding(NETWORKD_UNKNOWN, UNKNOWN, "y")
    info = Finding(NETWORKD_NOT_RUNNING, INFO, "z")
    assert exit_code([]) == 0
    assert exit_code([info]) == 0
    assert exit_code([info, unknown]) == 2
    assert exit_code([unknown, problem]) == 1
