"""The doctor's shell: read the sources, run the pure analysis, apply the fix.

``run_doctor`` is what the CLI and the daemon call. Every source sits in
``DoctorSources`` so that tests swap the sources, not the logic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipamguard.doctor import fix
from ipamguard.doctor.analysis import (
    MANAGED,
    ContainerLinks,
    Finding,
    check_networkd,
    config_findings,
    exit_code,
    find_container_links,
)
from ipamguard.doctor.analysis import check_bridge_health as _bridge_health
from ipamguard.doctor.links import Link, LinkSource, SysfsLinks
from ipamguard.doctor.matching import NETWORK_DIRS, NetworkFile, scan_network_files
from ipamguard.doctor.netconfigs import CNI_CONFIG_DIRS, PODMAN_NETWORK_DIRS, read_bridge_configs
from ipamguard.doctor.networkd import DBusNetworkd, NetworkdClient, NetworkdStatus
from ipamguard.errors import DoctorError, FixError


@dataclass(frozen=True)
class DoctorSources:
    """Where doctor looks (and where the fix writes): the live system by default."""

    links: LinkSource = field(default_factory=SysfsLinks)
    networkd: NetworkdClient = field(default_factory=DBusNetworkd)
    podman_dirs: tuple[Path, ...] = PODMAN_NETWORK_DIRS
    cni_dirs: tuple[Path, ...] = CNI_CONFIG_DIRS
    network_dirs: tuple[Path, ...] = NETWORK_DIRS
    dropin_path: Path = fix.DROPIN_PATH  # where --fix writes


@dataclass(frozen=True)
class DoctorReport:
    """Everything one doctor run saw, and what it found."""

    links: tuple[Link, ...]
    configured_bridges: dict[str, str]
    container: ContainerLinks
    networkd: NetworkdStatus
    network_files: tuple[NetworkFile, ...]
    findings: tuple[Finding, ...]

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``doctor --json`` prints)."""
        return {
            "exit_code": self.exit_code,
            "healthy": self.exit_code == 0,
            "networkd": {
                "running": self.networkd.running,
                "detail": self.networkd.detail,
                "links": [asdict(link) for link in self.networkd.links],
            },
            "container_bridges": dict(sorted(self.container.bridges.items())),
            "configured_bridges": dict(sorted(self.configured_bridges.items())),
            "container_veths": dict(sorted(self.container.veths.items())),
            "network_files": [str(f.path) for f in self.network_files],
            "findings": [finding_to_dict(f) for f in self.findings],
        }


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    data["may_match"] = list(finding.may_match)
    return data


def run_doctor(sources: DoctorSources | None = None) -> DoctorReport:
    """Check networkd against container links, and bridge health. Never raises for
    an absent networkd or D-Bus: that becomes a finding."""
    sources = sources or DoctorSources()
    configs = read_bridge_configs(sources.podman_dirs, sources.cni_dirs)
    links = tuple(sources.links.links())
    container = find_container_links(links, configs.bridges)
    status = sources.networkd.status()
    network_files = tuple(scan_network_files(sources.network_dirs))
    findings = (
        *config_findings(configs.unreadable),
        *check_networkd(links, container, status, network_files),
        *_bridge_health(links, container),
    )
    return DoctorReport(links, configs.bridges, container, status, network_files, findings)


def plan_fix(report: DoctorReport, dropin: Path = fix.DROPIN_PATH) -> fix.FixPlan:
    """What ``--fix`` would do for this report (raises Refused on a foreign file)."""
    bridges = set(report.configured_bridges) | set(report.container.bridges)
    return fix.plan_fix(
        report.findings,
        bridges,
        report.links,
        report.network_files,
        fix.read_current(dropin),
        dropin,
    )


def apply_fix(
    plan: fix.FixPlan,
    sources: DoctorSources,
    settle_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DoctorReport:
    """Write the drop-in (if needed), reload networkd, wait until it let go of the
    links (or ``settle_seconds`` passed) and return the report after the fix."""
    if plan.action == fix.WRITE:
        fix.write_dropin(plan)
    try:
        sources.networkd.reload()
    except DoctorError as error:
        raise FixError(
            f"{plan.path} is in place, but networkd did not reload ({error}); "
            "run: networkctl reload"
        ) from error
    deadline = time.monotonic() + settle_seconds
    while True:
        after = run_doctor(sources)
        still = {f.link for f in after.findings if f.kind == MANAGED} & set(plan.links)
        if not still or time.monotonic() >= deadline:
            return after
        sleep(0.1)
