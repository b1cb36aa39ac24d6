"""Prometheus metrics for node_exporter's textfile collector (``[metrics] textfile``).

``MetricsSnapshot`` is what the daemon knows after a reconcile; ``render`` turns it
into Prometheus' text exposition format (HELP and TYPE for every metric), byte for byte
what prometheus_client's ``generate_latest`` writes for the same metrics (the tests
compare them). Not prometheus_client itself: importing any part of it imports ``ssl``
(for its push gateway), which the daemon keeps out (ipamguard.openssl).

``write_textfile`` replaces the file atomically: a temporary file in the same directory
(named ``.NAME.*.tmp``: node_exporter reads only ``*.prom``), mode 0644 (the unit's
UMask=0077 would leave it unreadable to node_exporter's user), then a rename, so that
a scrape sees the old file or the new one, never a part. No fsync: the file is rewritten
after every reconcile and a lost one costs one scrape.

Labels are networks, subnets, stores, kinds and reasons: never container IDs or
addresses, so that the number of series stays bounded by the number of subnets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ipamguard.state import write_atomically

TEXTFILE_MODE = 0o644

FINDINGS = "ipamguard_findings"
ALLOCATIONS = "ipamguard_allocations"
SUBNET_ADDRESSES = "ipamguard_subnet_addresses"
SUBNET_FREE = "ipamguard_subnet_addresses_free"
RELEASES = "ipamguard_releases"  # exposed as ipamguard_releases_total
REFUSALS = "ipamguard_repair_refusals"  # exposed as ipamguard_repair_refusals_total
CYCLE_DURATION = "ipamguard_cycle_duration_seconds"
LAST_CYCLE = "ipamguard_last_cycle_timestamp_seconds"
LAST_CYCLE_SUCCESS = "ipamguard_last_cycle_success"
PODMAN_REACHABLE = "ipamguard_podman_reachable"
REPAIR_ENABLED = "ipamguard_repair_enabled"
RESYNC = "ipamguard_resync_seconds"
LOCK_HOLD = "ipamguard_db_lock_hold_seconds"
NETWORKD_CONFLICTS = "ipamguard_networkd_conflicts"
LINK_PROBLEMS = "ipamguard_link_problems"
BUILD_INFO = "ipamguard_build_info"


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every value of one textfile; None: unknown (the metric has no sample)."""

    version: str
    podman_reachable: bool
    repair_enabled: bool
    resync_seconds: float
    findings: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """(store, network, kind) -> open findings; every kind of every network, 0s too."""
    allocations: Mapping[tuple[str, str], int] = field(default_factory=dict)
    subnet_addresses: Mapping[tuple[str, str], int] = field(default_factory=dict)
    subnet_free: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(network, subnet) -> addresses allocated / podman can hand out / still free."""
    releases: Mapping[str, float] = field(default_factory=dict)  # kind -> since ever
    refusals: Mapping[str, float] = field(default_factory=dict)  # reason -> since ever
    cycle_seconds: float | None = None
    last_cycle_timestamp: float | None = None
    last_cycle_success: bool | None = None
    lock_hold_seconds: float | None = None
    networkd_conflicts: int | None = None
    link_problems: int | None = None


class Family(NamedTuple):
    """One metric: its name (a counter's without ``_total``), type, help text, label
    names and samples (label values, value)."""

    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...] = ()
    samples: tuple[tuple[tuple[str, ...], float], ...] = ()


def _families(s: MetricsSnapshot) -> Iterator[Family]:
    def gauge(name: str, text: str, value: float | None) -> Family:
        return Family(name, "gauge", text, (), () if value is None else (((), float(value)),))

    def labelled(name: str, text: str, labels: list[str], values: Mapping[Any, float]) -> Family:
        samples = tuple((tuple(key), float(values[key])) for key in sorted(values))
        return Family(name, "gauge", text, tuple(labels), samples)

    def counter(name: str, text: str, label: str, values: Mapping[str, float]) -> Family:
        samples = tuple(((key,), float(values[key])) for key in sorted(values))
        return Family(name, "counter", text, (label,), samples)

    yield labelled(
        FINDINGS,
        "Open findings of the last reconcile per store, network and kind "
        "(leaked, stale, dangling, orphan-network, malformed); 0 when none.",
        ["store", "network", "kind"],
        s.findings,
    )
    yield labelled(
        ALLOCATIONS, "Addresses allocated in the subnet (IP keys in ipam.db).",
        ["network", "subnet"], s.allocations,
    )  # fmt: skip
    yield labelled(
        SUBNET_ADDRESSES,
        "Addresses podman can hand out in the subnet: all but the network address, "
        "the IPv4 broadcast address and the gateway.",
        ["network", "subnet"],
        s.subnet_addresses,
    )
    yield labelled(
        SUBNET_FREE, "Addresses of the subnet podman can hand out and nobody holds.",
        ["network", "subnet"], s.subnet_free,
    )  # fmt: skip
    yield counter(
        RELEASES, "Findings released by the daemon, per kind (kept across restarts).",
        "kind", s.releases,
    )  # fmt: skip
    yield counter(
        REFUSALS,
        "Releases the daemon refused right before the write, per reason (kept across restarts).",
        "reason",
        s.refusals,
    )
    yield gauge(CYCLE_DURATION, "Duration of the last reconcile.", s.cycle_seconds)
    yield gauge(
        LAST_CYCLE, "When the last successful reconcile ended (Unix time).",
        s.last_cycle_timestamp,
    )  # fmt: skip
    success = None if s.last_cycle_success is None else float(s.last_cycle_success)
    yield gauge(LAST_CYCLE_SUCCESS, "1 if the last reconcile succeeded, else 0.", success)
    yield gauge(
        PODMAN_REACHABLE, "1 if podman's API and event stream answer, else 0 (nothing "
        "is released meanwhile).", float(s.podman_reachable),
    )  # fmt: skip
    yield gauge(REPAIR_ENABLED, "1 if [repair] enabled, else 0.", float(s.repair_enabled))
    yield gauge(RESYNC, "[watch] resync_seconds: a reconcile runs at least this often.",
                s.resync_seconds)  # fmt: skip
    yield gauge(
        LOCK_HOLD, "How long the daemon's last write held ipam.db's exclusive lock.",
        s.lock_hold_seconds,
    )  # fmt: skip
    yield gauge(
        NETWORKD_CONFLICTS, "Container links managed by systemd-networkd (ipamguard doctor).",
        s.networkd_conflicts,
    )  # fmt: skip
    yield gauge(
        LINK_PROBLEMS, "Container link problems found by the doctor's check, networkd "
        "conflicts included.", s.link_problems,
    )  # fmt: skip
    yield Family(BUILD_INFO, "gauge", "ipamguard's version (always 1).", ("version",),
                 (((s.version,), 1.0),))  # fmt: skip


def render(snapshot: MetricsSnapshot) -> bytes:
    """The snapshot in Prometheus' text exposition format (0.0.4), byte for byte what
    prometheus_client's ``generate_latest`` writes for the same families (tested)."""
    out = []
    for family in _families(snapshot):
        name = family.name + "_total" if family.type == "counter" else family.name
        help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n")
        for values, value in family.samples:
            pairs = sorted(zip(family.labels, values, strict=True))
            labels = ",".join(f'{label}="{_escape(text)}"' for label, text in pairs)
            out.append(f"{name}{{{labels}}} {_go_float(value)}\n" if labels else
                       f"{name} {_go_float(value)}\n")  # fmt: skip
    return "".join(out).encode()


def _escape(value: str) -> str:
    """A label value in the text format: backslash, newline and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _go_float(value: float) -> str:
    """A sample value as Go's strconv (and prometheus_client) writes it: repr, but an
    exponent from a million up (1.8000000005e+09, not 1800000000.5), and +Inf, -Inf, NaN."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def write_textfile(path: str, snapshot: MetricsSnapshot) -> None:
    """Replace ``path`` atomically with the rendered snapshot (OSError on failure,
    the old file left as it was)."""
    write_atomically(path, render(snapshot), TEXTFILE_MODE)
