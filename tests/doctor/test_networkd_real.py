"""``ipamguard doctor`` against a real systemd-networkd and a real D-Bus system bus.

Everything runs in private namespaces (see networkd_sandbox.py): a bridge
``podman1`` named by a podman network config, a docker-style bridge, a veth
enslaved to podman1 whose peer sits in another network namespace (as a
container's eth0 would), and a catch-all ``[Match] Name=*`` file. networkd 252
then manages the container links and removes the veth from its bridge: the field
failure, reproduced for real. Nothing here is a stand-in: doctor runs inside the
namespaces as ``python3 -m ipamguard doctor`` and talks to the real bus.

Skipped when not root or a tool is missing; fails instead when $CI is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .networkd_sandbox import NetworkdSandbox, missing_requirements

pytestmark = pytest.mark.e2e

CATCH_ALL = "/etc/systemd/network/99-catch-all.network"
DROPIN = "/etc/systemd/network/00-ipamguard-container-links.network"
DOCKER_BRIDGE = "br-0123456789ab"
CONTAINER_LINKS = ("podman1", DOCKER_BRIDGE, "veth0")
MANAGED_STATES = {"configuring", "configured"}

PODMAN_NETWORK = {
    "name": "doctornet",
    "id": "5b2f0d6c1f7e4a3b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b",
    "driver": "bridge",
    "network_interface": "podman1",
    "created": "2024-01-01T00:00:00Z",
    "subnets": [{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}],
    "ipv6_enabled": False,
    "internal": False,
    "dns_enabled": False,
    "ipam_options": {"driver": "host-local"},
}

LINKS = f"""
ip netns add container1
ip link add podman1 type bridge
ip link add {DOCKER_BRIDGE} type bridge
ip link add veth0 type veth peer name eth0 netns container1
ip link set veth0 master podman1
ip link set podman1 up
ip link set {DOCKER_BRIDGE} up
ip link set veth0 up
ip -n container1 link set eth0 up
printf '[Match]\\nName=*\\n\\n[Network]\\nLinkLocalAddressing=no\\n' > {CATCH_ALL}
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[NetworkdSandbox]:
    reason = missing_requirements()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"networkd e2e tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    with NetworkdSandbox(tmp_path / "state") as sb:
        sb.sh(LINKS)
        yield sb


@pytest.fixture
def config_args(tmp_path: Path) -> tuple[str, ...]:
    """--network-dir with a podman network naming podman1, and an empty CNI dir."""
    networks = tmp_path / "networks"
    networks.mkdir()
    (networks / "doctornet.json").write_text(json.dumps(PODMAN_NETWORK, indent=2))
    (tmp_path / "cni").mkdir()
    return ("--network-dir", str(networks), "--cni-dir", str(tmp_path / "cni"))


def kinds(report: dict[str, object]) -> dict[tuple[str, str | None], dict[str, object]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {(f["kind"], f["link"]): f for f in findings}


def test_doctor_finds_fixes_and_rechecks_networkd(
    sandbox: NetworkdSandbox, config_args: tuple[str, ...]
) -> None:
    sandbox.start_networkd()
    wanted = dict.fromkeys(CONTAINER_LINKS, MANAGED_STATES)
    sandbox.wait_for_states(wanted)
    # networkd 252 applies the catch-all to veth0 and takes it off its bridge.
    sandbox.wait_for(lambda: sandbox.master("veth0") is None, "networkd to detach veth0")

    # 1. doctor sees the managed container links and the file that caught them.
    code, report = sandbox.doctor_json(*config_args)
    assert code == 1
    assert report["networkd"]["running"] is True
    assert "doctornet" in report["container_bridges"]["podman1"]  # from the config
    assert report["container_veths"] == {"veth0": None}
    found = kinds(report)
    for link in CONTAINER_LINKS:
        managed = found[("networkd-manages-container-link", link)]
        assert managed["network_file"] == CATCH_ALL
        assert managed["severity"] == "problem"
    assert ("networkd-manages-container-link", "lo") not in found  # not a container link
    assert ("veth-not-on-bridge", "veth0") in found
    text = sandbox.doctor(*config_args)
    assert "manages container link podman1 (state configur" in text.stdout
    assert f"caught by {CATCH_ALL}" in text.stdout
    assert text.returncode == 1

    # 2. --fix without --yes and without a terminal refuses, in one line.
    refused = sandbox.doctor("--fix", *config_args)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--yes" in refused.stderr
    assert sandbox.sh(f"test -e {DROPIN} && echo yes || echo no").strip() == "no"

    # 3. --dry-run shows the file and writes nothing.
    dry = sandbox.doctor("--fix", "--dry-run", *config_args)
    assert "Unmanaged=yes" in dry.stdout and DROPIN in dry.stdout
    assert sandbox.sh(f"test -e {DROPIN} && echo yes || echo no").strip() == "no"

    # 4. --fix --yes writes the drop-in, reloads networkd over D-Bus; networkd lets go.
    code, fixed = sandbox.doctor_json("--fix", "--yes", *config_args)
    assert fixed["fix"]["action"] == "write" and fixed["fix"]["applied"] is True
    assert set(fixed["fix"]["links"]) == set(CONTAINER_LINKS)
    assert not [f for f in fixed["findings"] if f["kind"] == "networkd-manages-container-link"]
    content = sandbox.sh(f"cat {DROPIN}")
    assert "Unmanaged=yes" in content
    assert "podman[0-9]*" in content and "veth*" in content
    states = sandbox.admin_states([*CONTAINER_LINKS, "lo"])  # busctl, not our client
    assert states == dict.fromkeys(CONTAINER_LINKS, "unmanaged") | {"lo": "configured"}
    assert code == 1  # veth0 is still off its bridge: the fix does not re-attach it

    # 5. Re-attached by hand, veth0 stays on its bridge across a networkd reload.
    sandbox.sh("ip link set veth0 master podman1")
    sandbox.reload_networkd()  # busctl ... Manager Reload
    sandbox.sh("sleep 0.3")
    assert sandbox.master("veth0") == "podman1"
    code, healthy = sandbox.doctor_json(*config_args)
    assert (code, healthy["findings"]) == (0, [])
    assert healthy["container_veths"] == {"veth0": "podman1"}

    # 6. A second --fix changes nothing and says so.
    before = sandbox.sh(f"stat -c %Y.%Z.%i {DROPIN}; cat {DROPIN}")
    code, again = sandbox.doctor_json("--fix", "--yes", *config_args)
    assert code == 0
    assert again["fix"]["action"] == "nothing" and again["fix"]["applied"] is False
    assert sandbox.sh(f"stat -c %Y.%Z.%i {DROPIN}; cat {DROPIN}") == before
    assert "nothing to do" in sandbox.doctor("--fix", "--yes", *config_args).stdout

    # 7. A veth taken off its bridge by hand is reported.
    sandbox.sh("ip link set veth0 nomaster")
    code, broken = sandbox.doctor_json(*config_args)
    assert code == 1
    assert [(f["kind"], f["link"]) for f in broken["findings"]] == [("veth-not-on-bridge", "veth0")]

    # 8. networkd stopped: "not running", and bridge health is still checked.
    sandbox.stop_networkd()
    code, stopped = sandbox.doctor_json(*config_args)
    assert stopped["networkd"]["running"] is False
    assert set(kinds(stopped)) == {
        ("networkd-not-running", None),
        ("veth-not-on-bridge", "veth0"),
    }
    assert code == 1


def test_doctor_without_networkd_or_dbus(
    sandbox: NetworkdSandbox, config_args: tuple[str, ...]
) -> None:
    # networkd never started: healthy bridges are healthy (exit 0).
    code, report = sandbox.doctor_json(*config_args)
    assert report["networkd"]["running"] is False
    assert [f["kind"] for f in report["findings"]] == ["networkd-not-running"]
    assert code == 0
    assert report["container_veths"] == {"veth0": "podman1"}

    # veth down on its bridge, then off its bridge.
    sandbox.sh("ip link set veth0 down")
    code, report = sandbox.doctor_json(*config_args)
    assert ("veth-down", "veth0") in kinds(report) and code == 1
    sandbox.sh("ip link set veth0 up; ip link set veth0 nomaster")
    code, report = sandbox.doctor_json(*config_args)
    assert ("veth-not-on-bridge", "veth0") in kinds(report) and code == 1

    # No system bus at all: networkd is "unknown", bridge health still runs.
    sandbox.stop_dbus()
    code, report = sandbox.doctor_json(*config_args)
    assert report["networkd"]["running"] is None
    assert "D-Bus" in report["networkd"]["detail"]
    assert set(kinds(report)) == {("networkd-unknown", None), ("veth-not-on-bridge", "veth0")}
    assert code == 1
    sandbox.sh("ip link set veth0 master podman1")
    code, report = sandbox.doctor_json(*config_args)
    assert [f["kind"] for f in report["findings"]] == ["networkd-unknown"]
    assert code == 2  # healthy bridges, but networkd could not be checked
    text = sandbox.doctor(*config_args)
    assert "Traceback" not in text.stderr and "could not check" in text.stdout
