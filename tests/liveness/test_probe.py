"""ARP and neighbour-solicitation probes on a real bridge, in namespaces of their own.

The e2e tests build a ``NetLab`` (netlab.py): a bridge in one network namespace, a
veth to a second namespace holding 10.99.0.5/24 and fd99::5/64, and run the probe in
the first. Nothing is mocked: frames go through the kernel's bridge and the peer's
kernel answers. The codec and config tests at the end need no root.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipamguard.liveness import bridges, probe
from ipamguard.liveness.probe import ProbeResult, probe_addresses

from .netlab import BRIDGE, PEER_V4, PEER_V6, REPO_ROOT, NetLab, require_lab

IMAGE = "localhost/bb"  # the e2e sandbox's busybox image (tests/e2e/sandbox.py)

e2e = pytest.mark.e2e
TIMEOUT = 0.5
SLACK = 0.3  # interpreter and kernel overhead allowed on top of the timeout


@pytest.fixture
def lab() -> Iterator[NetLab]:
    require_lab()
    net = NetLab()
    try:
        yield net
    finally:
        net.close()


def write_config(directory: Path, name: str, **fields: object) -> Path:
    """A netavark network config as podman writes it (the fields the probe reads)."""
    config = {"name": name, "driver": "bridge", "internal": False, "ipam_options": {}}
    config.update(fields)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


# --------------------------------------------------------------------------- IPv4


@e2e
def test_a_live_ipv4_address_answers_with_the_peers_mac(lab: NetLab) -> None:
    got = lab.probe([PEER_V4])
    answer = got.results[PEER_V4]
    assert answer["status"] == "in-use"
    assert answer["mac"] == lab.peer_mac
    assert answer["reason"].startswith(f"ARP reply from {lab.peer_mac} in ")
    assert answer["elapsed"] < 0.05, answer  # measured: about 0.02 ms on a veth
    assert got.wall < TIMEOUT / 2, "an answer ends the probe early"


@e2e
def test_an_unused_ipv4_address_is_silent_for_the_whole_timeout(lab: NetLab) -> None:
    got = lab.probe(["10.99.0.77"])
    assert got.results["10.99.0.77"] == {
        "status": "silent",
        "reason": f"no answer to 3 ARP probes on {BRIDGE} within 0.5 s",
        "mac": None,
        "elapsed": None,
    }
    assert TIMEOUT <= got.wall < TIMEOUT + SLACK


@e2e
def test_fifty_addresses_take_one_timeout_not_fifty(lab: NetLab) -> None:
    silent = [f"10.99.0.{i}" for i in range(100, 150)]
    got = lab.probe([*silent, PEER_V4])
    assert {a for a, r in got.results.items() if r["status"] == "in-use"} == {PEER_V4}
    assert all(got.status(a) == "silent" for a in silent)
    assert got.wall < TIMEOUT + SLACK


@e2e
def test_a_veth_detached_from_the_bridge_is_silent(lab: NetLab) -> None:
    lab.ip(lab.host, "link", "set", "veth-h", "nomaster")
    got = lab.probe([PEER_V4, PEER_V6])
    assert got.status(PEER_V4) == "silent"
    assert got.status(PEER_V6) == "silent"


@e2e
def test_a_container_whose_process_died_without_teardown_still_answers(lab: NetLab) -> None:
    """Its namespace stays bound (as podman binds it under /run/netns), its veth on the
    bridge: the kernel answers for it with no process inside."""
    sleeper = subprocess.Popen(["ip", "netns", "exec", lab.peer, "sleep", "1000"])
    try:
        assert lab.probe([PEER_V4]).status(PEER_V4) == "in-use"
        sleeper.send_signal(signal.SIGKILL)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert lab.exec(lab.peer, "true") is not None
    assert run_ip_netns_pids(lab, lab.peer) == ""
    got = lab.probe([PEER_V4, PEER_V6])
    assert got.status(PEER_V4) == "in-use"
    assert got.status(PEER_V6) == "in-use"


def run_ip_netns_pids(lab: NetLab, ns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- IPv6


@e2e
def test_a_live_ipv6_address_answers_a_dad_solicitation(lab: NetLab) -> None:
    got = lab.probe([PEER_V6])
    answer = got.results[PEER_V6]
    assert answer["status"] == "in-use"
    assert answer["mac"] == lab.peer_mac
    assert answer["reason"].startswith(f"neighbour advertisement from {lab.peer_mac} in ")
    assert answer["elapsed"] < 0.05, answer
    assert got.wall < TIMEOUT / 2


@e2e
def test_an_unused_ipv6_address_is_silent(lab: NetLab) -> None:
    got = lab.probe(["fd99::77"])
    assert got.reason("fd99::77") == (
        f"no answer to 3 neighbour solicitations on {BRIDGE} within 0.5 s"
    )
    assert got.status("fd99::77") == "silent"
    assert TIMEOUT <= got.wall < TIMEOUT + SLACK


@e2e
def test_both_families_and_odd_spellings_in_one_call(lab: NetLab) -> None:
    got = lab.probe([PEER_V4, "fd99:0:0::5", "fd99::78", "10.99.0.78", "bogus", "224.0.0.1"])
    assert {a: r["status"] for a, r in got.results.items()} == {
        PEER_V4: "in-use",
        "fd99:0:0::5": "in-use",
        "fd99::78": "silent",
        "10.99.0.78": "silent",
        "bogus": "impossible",
        "224.0.0.1": "impossible",
    }
    assert got.reason("bogus") == "'bogus' is not an IP address"
    assert got.wall < TIMEOUT + SLACK


# --------------------------------------------------------------------------- impossible


@e2e
def test_without_cap_net_raw_probing_is_impossible(lab: NetLab) -> None:
    got = lab.probe([PEER_V4], prefix=["setpriv", "--inh-caps=-all", "--bounding-set=-all"])
    assert got.status(PEER_V4) == "impossible"
    assert "needs CAP_NET_RAW" in got.reason(PEER_V4)


@e2e
def test_cap_net_raw_of_a_user_namespace_is_not_enough(lab: NetLab) -> None:
    """systemd's PrivateUsers=yes: root of a user namespace that does not own the
    network namespace holds no CAP_NET_RAW there."""
    got = lab.probe([PEER_V4], prefix=["unshare", "--user", "--map-root-user"])
    assert got.status(PEER_V4) == "impossible"
    assert "needs CAP_NET_RAW" in got.reason(PEER_V4)


@e2e
def test_af_packet_denied_by_seccomp_is_impossible(lab: NetLab) -> None:
    """What RestrictAddressFamilies= without AF_PACKET does: EAFNOSUPPORT."""
    got = lab.probe([PEER_V4, PEER_V6], deny_packet=True)
    for address in (PEER_V4, PEER_V6):
        assert got.status(address) == "impossible"
        assert "AF_PACKET sockets are not allowed here" in got.reason(address)


@e2e
def test_a_missing_or_down_interface_is_impossible_for_probe_addresses(lab: NetLab) -> None:
    got = lab.probe([PEER_V4], interface="ipgbr9")
    assert got.results[PEER_V4]["status"] == "impossible"
    assert got.reason(PEER_V4) == "interface ipgbr9 does not exist"
    lab.ip(lab.host, "link", "set", BRIDGE, "down")
    got = lab.probe([PEER_V4])
    assert got.reason(PEER_V4) == f"interface {BRIDGE} is down"


@e2e
def test_a_bridge_removed_while_probing_makes_it_impossible(lab: NetLab) -> None:
    got = lab.probe(
        ["10.99.0.7", "fd99::7"],
        timeout=2.0,
        meanwhile=lambda: lab.ip(lab.host, "link", "del", BRIDGE),
    )
    for address in ("10.99.0.7", "fd99::7"):
        assert got.status(address) == "impossible"
        assert got.reason(address) == (
            f"probing on {BRIDGE} failed: Network is down "
            "(the interface went down or was removed meanwhile)"
        )
    assert got.wall < 1.0, "no waiting for the rest of the timeout"


# --------------------------------------------------------------------------- networks


@e2e
def test_a_bridge_network_is_probed_on_its_bridge(lab: NetLab, tmp_path: Path) -> None:
    write_config(tmp_path, "lab", network_interface=BRIDGE)
    got = lab.probe_network(tmp_path, "lab", [PEER_V4, "10.99.0.9"])
    assert got.status(PEER_V4) == "in-use"
    assert got.results[PEER_V4]["mac"] == lab.peer_mac
    assert got.status("10.99.0.9") == "silent"


@e2e
def test_several_networks_are_probed_at_once(lab: NetLab, tmp_path: Path) -> None:
    lab.ip(lab.host, "link", "add", "ipgbr1", "type", "bridge")
    lab.ip(lab.host, "link", "set", "ipgbr1", "up")
    write_config(tmp_path, "lab", network_interface=BRIDGE)
    write_config(tmp_path, "empty", network_interface="ipgbr1")
    write_config(tmp_path, "gone", network_interface="ipgbr9")
    wanted = {"lab": [PEER_V4, "10.99.0.77"], "empty": ["10.99.1.9"], "gone": ["10.99.2.9"]}
    got = lab.probe_networks(tmp_path, wanted)
    assert {k: r["status"] for k, r in got.results.items()} == {
        f"lab/{PEER_V4}": "in-use",
        "lab/10.99.0.77": "silent",
        "empty/10.99.1.9": "silent",
        "gone/10.99.2.9": "silent",
    }
    assert got.reason("empty/10.99.1.9") == "no answer to 3 ARP probes on ipgbr1 within 0.5 s"
    assert got.wall < TIMEOUT + SLACK, "one timeout for all networks"


@e2e
def test_a_network_whose_bridge_is_gone_is_silent(lab: NetLab, tmp_path: Path) -> None:
    """netavark removes the bridge when its last container leaves: nothing is attached."""
    write_config(tmp_path, "gone", network_interface="ipgbr9")
    got = lab.probe_network(tmp_path, "gone", [PEER_V4])
    assert got.results[PEER_V4] == {
        "status": "silent",
        "reason": "bridge ipgbr9 does not exist: no container is attached",
        "mac": None,
        "elapsed": None,
    }
    assert got.wall < 0.1, "no probe is sent"
    got = lab.probe_network(tmp_path, "podman", [PEER_V4])  # podman's default, no file
    assert got.reason(PEER_V4) == "bridge podman0 does not exist: no container is attached"


@e2e
def test_an_interface_that_is_not_a_bridge_is_impossible(lab: NetLab, tmp_path: Path) -> None:
    write_config(tmp_path, "odd", network_interface="veth-h")
    got = lab.probe_network(tmp_path, "odd", [PEER_V4])
    assert got.status(PEER_V4) == "impossible"
    assert got.reason(PEER_V4) == "veth-h is a veth interface, not a bridge"


@e2e
def test_a_cni_bridge_network_is_probed_on_its_bridge(lab: NetLab, tmp_path: Path) -> None:
    conflist = {
        "cniVersion": "0.4.0",
        "name": "labcni",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipam": {}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (tmp_path / "88-labcni.conflist").write_text(json.dumps(conflist))
    got = lab.probe_network(tmp_path, "labcni", [PEER_V4], cni=True)
    assert got.status(PEER_V4) == "in-use"
    got = lab.probe_network(tmp_path, "podman", [PEER_V4], cni=True)
    assert got.reason(PEER_V4) == "bridge cni-podman0 does not exist: no container is attached"


@e2e
def test_a_private_network_namespace_is_not_taken_for_an_empty_network(
    lab: NetLab, tmp_path: Path
) -> None:
    """Only a loopback in sight (e.g. PrivateNetwork=yes): a missing bridge proves nothing."""
    write_config(tmp_path, "lab", network_interface=BRIDGE)
    got = lab.probe_network(tmp_path, "lab", [PEER_V4], prefix=["unshare", "--net"])
    assert got.status(PEER_V4) == "impossible"
    assert "sees only a loopback interface" in got.reason(PEER_V4)


# --------------------------------------------------------------------------- real podman

PODMAN_PROBE = """
import json, sys
from ipamguard.liveness.bridges import network_prober
results = network_prober()(sys.argv[1], sys.argv[2:])
print(json.dumps({a: [r.status, r.reason, r.mac] for a, r in results.items()}))
"""


@e2e
def test_real_podman_containers_answer_until_their_bridge_is_gone(sandbox: Any) -> None:
    """netavark's config and bridge, a running container, one whose conmon and process
    were killed (no cleanup ran: podman still says Up), then ``podman rm``."""

    def probe_in_sandbox(network: str, *addresses: str) -> dict[str, list[Any]]:
        argv = [sys.executable, "-c", PODMAN_PROBE, network, *addresses]
        answer = sandbox.run(*argv, env={"PYTHONPATH": str(REPO_ROOT)}).stdout
        result: dict[str, list[Any]] = json.loads(answer)
        return result

    sandbox.run("ip", "link", "add", "eth-ipg", "type", "veth")  # a host has more than lo
    sandbox.network_create("pnet", "10.89.7.0/24")
    sandbox.podman("run", "-d", "--name", "c1", "--network", "pnet", "--ip", "10.89.7.10",
                   IMAGE, "sleep", "1000")  # fmt: skip
    sandbox.podman("run", "-d", "--name", "c2", IMAGE, "sleep", "1000")  # network "podman"
    c1, c2 = json.loads(sandbox.podman("inspect", "c1", "c2").stdout)
    mac = c1["NetworkSettings"]["Networks"]["pnet"]["MacAddress"]
    default_ip = c2["NetworkSettings"]["Networks"]["podman"]["IPAddress"]

    got = probe_in_sandbox("pnet", "10.89.7.10", "10.89.7.11")
    assert got["10.89.7.10"][0::2] == ["in-use", mac]
    assert got["10.89.7.11"] == [
        "silent",
        "no answer to 3 ARP probes on podman1 within 0.5 s",
        None,
    ]
    assert probe_in_sandbox("podman", default_ip)[default_ip][0] == "in-use"  # podman0, no file

    pid = c1["State"]["Pid"]
    sandbox.run("sh", "-c", f"kill -9 $(cat {c1['ConmonPidFile']}) {pid}")
    assert "Up" in sandbox.podman("ps", "--filter", "name=c1", "--format", "{{.Status}}").stdout
    assert probe_in_sandbox("pnet", "10.89.7.10")["10.89.7.10"][0::2] == ["in-use", mac]

    sandbox.podman("rm", "-f", "c1")  # the last container of pnet: netavark removes podman1
    assert probe_in_sandbox("pnet", "10.89.7.10")["10.89.7.10"] == [
        "silent", "bridge podman1 does not exist: no container is attached", None,
    ]  # fmt: skip


# --------------------------------------------------------------------------- no root needed


def test_arp_probe_frame_is_rfc5227() -> None:
    mac = bytes.fromhex("0a0b0c0d0e0f")
    frame = probe.arp_probe(mac, ipaddress.IPv4Address("10.99.0.5"))
    assert frame[:14] == b"\xff" * 6 + mac + b"\x08\x06"
    fields = struct.unpack("!HHBBH6s4s6s4s", frame[14:])
    assert fields == (1, 0x0800, 6, 4, 1, mac, bytes(4), bytes(6), bytes([10, 99, 0, 5]))


def test_neighbour_solicitation_frame_and_checksum() -> None:
    mac = bytes.fromhex("0a0b0c0d0e0f")
    target = ipaddress.IPv6Address("fd99::1234:5678")
    frame = probe.neighbour_solicitation(mac, target)
    assert frame[:14] == bytes.fromhex("3333ff345678") + mac + b"\x86\xdd"
    group = ipaddress.IPv6Address("ff02::1:ff34:5678")
    assert probe.solicited_node(target) == group
    version, length, next_header, hops = struct.unpack_from("!IHBB", frame, 14)
    assert (version >> 28, length, next_header, hops) == (6, 24, 58, 255)
    assert frame[22:38] == bytes(16) and frame[38:54] == group.packed
    icmp = frame[54:]
    assert icmp[0] == 135 and icmp[1] == 0 and icmp[8:] == target.packed
    # the checksum over pseudo-header + message (checksum included) folds to zero
    assert probe.icmpv6_checksum(ipaddress.IPv6Address("::"), group, icmp) == 0


def test_bad_arguments_raise_but_bad_addresses_do_not() -> None:
    with pytest.raises(ValueError):
        probe_addresses("lo", ["10.0.0.1"], timeout=0)
    assert probe_addresses("lo", ["nope"]) == {
        "nope": ProbeResult("nope", "impossible", "'nope' is not an IP address")
    }
    assert probe_addresses("x" * 20, ["10.0.0.1"])["10.0.0.1"].reason == (
        f"{'x' * 20!r} is not a valid interface name"
    )


def test_macvlan_and_ipvlan_networks_are_not_probed(tmp_path: Path) -> None:
    write_config(tmp_path, "mv", driver="macvlan", network_interface="eth0")
    write_config(tmp_path, "iv", driver="ipvlan")
    mv = bridges.bridge_for_network(tmp_path, "mv")
    assert (mv.outcome, mv.driver, mv.interface) == ("impossible", "macvlan", "eth0")
    assert mv.reason.startswith(
        "macvlan network: the host cannot reach its own macvlan children through the "
        "parent interface eth0"
    )
    iv = bridges.bridge_for_network(tmp_path, "iv")
    assert iv.outcome == "impossible" and iv.reason.startswith("ipvlan network:")
    results = bridges.probe_network(mv, ["10.0.0.1"])
    assert results["10.0.0.1"].status == "impossible"
    assert results["10.0.0.1"].reason == mv.reason


def test_configs_missing_unreadable_or_found_by_name(tmp_path: Path) -> None:
    missing = bridges.bridge_for_network(tmp_path, "nope")
    assert missing.outcome == "impossible"
    assert missing.reason == f"no config for network 'nope' in {tmp_path}"
    (tmp_path / "broken.json").write_text("{")
    broken = bridges.bridge_for_network(tmp_path, "broken")
    assert broken.outcome == "impossible" and "is unreadable" in broken.reason
    # a file named otherwise is found by its "name"; an invalid interface name is refused
    (tmp_path / "other-file.json").write_text(
        json.dumps({"name": "renamed", "driver": "bridge", "network_interface": "a/b"})
    )
    renamed = bridges.bridge_for_network(tmp_path, "renamed")
    assert renamed.source == str(tmp_path / "other-file.json")
    assert renamed.reason == "'a/b' is not a valid interface name"
    internal = write_config(tmp_path, "inner", network_interface="", internal=True)
    inner = bridges.bridge_for_network(tmp_path, "inner")
    assert inner.internal and inner.reason == f"{internal} names no bridge"


def test_cni_configs(tmp_path: Path) -> None:
    (tmp_path / "10-mv.conflist").write_text(
        json.dumps({"name": "mv", "plugins": [{"type": "macvlan", "master": "eth1"}]})
    )
    (tmp_path / "20-plain.conf").write_text(json.dumps({"name": "plain", "type": "bridge"}))
    mv = bridges.cni_bridge_for_network(tmp_path, "mv")
    assert (mv.driver, mv.interface, mv.outcome) == ("macvlan", "eth1", "impossible")
    plain = bridges.cni_bridge_for_network(tmp_path, "plain")
    assert plain.interface == "cni0"  # the bridge plugin's default name
