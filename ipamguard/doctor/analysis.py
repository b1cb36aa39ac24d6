"""The doctor's judgement: a pure function of links, configs, networkd's view and
its ``.network`` files -> findings. No I/O here.

Which links belong to container networking:
- bridges named by podman/CNI configs, and existing bridges with a name the
  container tools pick by default (podman0, cni-podman0, docker0, br-<hex>);
- veths enslaved to one of those bridges;
- veths named ``veth*`` on no bridge whose peer is in another namespace: the host
  end of a container that lost its bridge (the field failure this check exists for).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ipamguard.doctor.links import Link, peer_is_local
from ipamguard.doctor.matching import MatchResult, NetworkFile, first_match
from ipamguard.doctor.netconfigs import family_pattern
from ipamguard.doctor.networkd import NetworkdStatus
from ipamguard.errors import EXIT_ERROR, EXIT_NOTHING, EXIT_OK

PROBLEM = "problem"  # something is broken or about to break: exit 1
UNKNOWN = "unknown"  # something could not be checked: exit 2 unless there are problems
INFO = "info"  # worth knowing, nothing to do

MANAGED = "networkd-manages-container-link"
VETH_NOT_ON_BRIDGE = "veth-not-on-bridge"
VETH_DOWN = "veth-down"
BRIDGE_DOWN = "bridge-down"
NETWORKD_NOT_RUNNING = "networkd-not-running"
NETWORKD_UNKNOWN = "networkd-unknown"
CONFIG_UNREADABLE = "config-unreadable"


@dataclass(frozen=True)
class Finding:
    """One thing doctor noticed, with the link it is about and how to read it."""

    kind: str
    severity: str
    message: str
    link: str | None = None
    network_file: str | None = None  # the .network file that caught the link
    may_match: tuple[str, ...] = ()  # earlier files we could not rule out
    hint: str | None = None


@dataclass(frozen=True)
class ContainerLinks:
    """The links of the container network stack that exist right now."""

    bridges: dict[str, str] = field(default_factory=dict)  # bridge -> why it is one
    veths: dict[str, str | None] = field(default_factory=dict)  # veth -> its bridge

    def names(self) -> list[str]:
        return sorted(self.bridges) + sorted(self.veths)


def find_container_links(
    links: Sequence[Link], configured_bridges: Mapping[str, str]
) -> ContainerLinks:
    """Which of ``links`` belong to container networking (see the module doc)."""
    container = ContainerLinks()
    for link in links:
        if not link.is_bridge:
            continue
        if link.name in configured_bridges:
            container.bridges[link.name] = configured_bridges[link.name]
        elif family_pattern(link.name) is not None:
            container.bridges[link.name] = "default name of a container bridge"
    for link in links:
        if not link.is_veth:
            continue
        if link.master in container.bridges:
            container.veths[link.name] = link.master
        elif (
            link.master is None and link.name.startswith("veth") and not peer_is_local(link, links)
        ):
            container.veths[link.name] = None
    return container


def check_bridge_health(links: Sequence[Link], container: ContainerLinks) -> list[Finding]:
    """Every container veth must be on its bridge and up; bridges with ports up."""
    by_name = {link.name: link for link in links}
    existing = sorted(container.bridges)
    findings = []
    for name, bridge in sorted(container.veths.items()):
        veth = by_name[name]
        if bridge is None:
            target = existing[0] if len(existing) == 1 else "BRIDGE"
            findings.append(
                Finding(
                    VETH_NOT_ON_BRIDGE,
                    PROBLEM,
                    f"{name} (a veth whose peer is in another network namespace) is on no "
                    "bridge: the container behind it has no network",
                    link=name,
                    hint=f"ip link set {name} master {target}, or restart the container",
                )
            )
        elif not veth.admin_up:
            findings.append(
                Finding(
                    VETH_DOWN,
                    PROBLEM,
                    f"{name} is on bridge {bridge} but down",
                    link=name,
                    hint=f"ip link set {name} up",
                )
            )
    for bridge in existing:
        has_ports = bridge in container.veths.values()
        if has_ports and not by_name[bridge].admin_up:
            findings.append(
                Finding(
                    BRIDGE_DOWN,
                    PROBLEM,
                    f"container bridge {bridge} has container veths but is down",
                    link=bridge,
                    hint=f"ip link set {bridge} up",
                )
            )
    return findings


def check_networkd(
    links: Sequence[Link],
    container: ContainerLinks,
    status: NetworkdStatus,
    network_files: Sequence[NetworkFile],
) -> list[Finding]:
    """Is networkd running, and does it manage any container link? With which file?"""
    if status.running is None:
        return [Finding(NETWORKD_UNKNOWN, UNKNOWN, f"systemd-networkd: {status.detail}")]
    if not status.running:
        return [Finding(NETWORKD_NOT_RUNNING, INFO, "systemd-networkd is not running")]
    by_name = {link.name: link for link in links}
    findings = []
    for name in container.names():
        seen = status.link(name)
        if seen is None or not seen.managed:
            continue
        ours = first_match(network_files, by_name[name])
        network_file = seen.network_file or (str(ours.file.path) if ours.file else None)
        may_match = _earlier_maybes(ours, network_file)
        caught_by = f"caught by {network_file}" if network_file else "no .network file yet"
        findings.append(
            Finding(
                MANAGED,
                PROBLEM,
                f"systemd-networkd manages container link {name} "
                f"(state {seen.administrative_state}), {caught_by}",
                link=name,
                network_file=network_file,
                may_match=may_match,
                hint="ipamguard doctor --fix marks container links unmanaged",
            )
        )
    return findings


def _earlier_maybes(ours: MatchResult, network_file: str | None) -> tuple[str, ...]:
    """Files we could not rule out that sort before the file that caught the link."""
    chosen = os.fsencode(os.path.basename(network_file)) if network_file else None
    return tuple(
        str(f.path) for f, _ in ours.maybe if chosen is None or os.fsencode(f.name) < chosen
    )


def config_findings(unreadable: Sequence[str]) -> list[Finding]:
    return [
        Finding(CONFIG_UNREADABLE, UNKNOWN, f"network config unreadable: {problem}")
        for problem in unreadable
    ]


def exit_code(findings: Sequence[Finding]) -> int:
    """0 healthy, 1 problems found, 2 something could not be checked."""
    severities = {finding.severity for finding in findings}
    if PROBLEM in severities:
        return EXIT_NOTHING
    if UNKNOWN in severities:
        return EXIT_ERROR
    return EXIT_OK
