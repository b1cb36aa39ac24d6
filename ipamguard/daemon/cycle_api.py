"""What the service needs from a reconcile cycle, and what a cycle reports back.

The service runs ``Cycle.run`` in a worker thread, never two at once; the cycle
reads ipam.db, asks liveness, reports (and, with repair on, releases) and returns
a ``CycleResult``. Errors it cannot handle are raised as ``IpamguardError``
(``LockTimeout``, ``PodmanUnavailable``, a ``BoltError`` for an unreadable
ipam.db): the service logs them with their MESSAGE_ID and retries later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ipamguard.capacity import SubnetCapacity
from ipamguard.config import Config

FindingCounts = Mapping[tuple[str, str, str], int]  # (store, network, kind) -> how many


@dataclass(frozen=True)
class CycleMeasures:
    """What a reconcile saw and did, for metrics and the state file (counts only:
    never container IDs, so that label sets stay bounded)."""

    findings: FindingCounts = field(default_factory=dict)
    """Open findings (after this cycle's releases) per store, network and kind."""
    networks: tuple[tuple[str, str], ...] = ()
    """(store, network) of every network bucket seen, findings or not."""
    subnets: tuple[SubnetCapacity, ...] = ()
    """Every subnet's size and allocations, after this cycle's releases."""
    released: Mapping[str, int] = field(default_factory=dict)
    """Findings released by this cycle, per kind."""
    refused: Mapping[str, int] = field(default_factory=dict)
    """Releases refused by this cycle, per reason (a short category)."""
    lock_hold_seconds: float | None = None
    """How long this cycle's last write held ipam.db's exclusive lock (None: no write)."""
    networkd_conflicts: int | None = None
    """Container links managed by systemd-networkd (None: the doctor could not look)."""
    link_problems: int | None = None
    """Every problem of the doctor's link check, the above included (veth off its
    bridge or down, bridge down); None: the doctor could not look."""


@dataclass(frozen=True)
class CycleResult:
    """The outcome of one reconcile."""

    networks: int
    allocations: int
    open_findings: int
    repaired: int
    podman_ok: bool
    repair_enabled: bool = False
    recheck_after: float | None = None
    """Seconds after which the cycle wants to run again, e.g. when a finding's grace
    period ends; None: at the next trigger or resync."""
    measures: CycleMeasures | None = None
    """The details behind the counts (None: a cycle that does not measure)."""

    @property
    def summary(self) -> str:
        """One STATUS line: "3 networks, 120 allocations, 1 open finding, repair off"."""
        parts = [
            _count(self.networks, "network"),
            _count(self.allocations, "allocation"),
            _count(self.open_findings, "open finding"),
            "repair on" if self.repair_enabled else "repair off",
        ]
        if self.repaired:
            parts.append(f"{self.repaired} repaired")
        if not self.podman_ok:
            parts.append("podman unreachable")
        return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Cycle(Protocol):
    """One full reconcile; ``reason`` says what triggered it (for logs)."""

    def run(self, reason: str, config: Config, focus: frozenset[str] | None = None) -> CycleResult:
        """``focus``: the containers the triggers named (see schedule.py); None: every
        container is looked at again."""
        ...


@dataclass(frozen=True)
class CycleOutcome:
    """One reconcile as the service saw it: handed to the ``CycleObserver``."""

    reason: str
    started_at: float  # time.time()
    seconds: float
    config: Config
    podman_ok: bool  # the service's view: event stream and API
    result: CycleResult | None  # None: the reconcile failed
    error: str | None = None


class CycleObserver(Protocol):
    """Told about every reconcile and podman state change (the state file, metrics).

    Called in the event loop's thread; an exception is logged as a bug, never fatal.
    """

    def started(self) -> None: ...

    def cycle_finished(self, outcome: CycleOutcome) -> None: ...

    def podman_changed(self, reachable: bool) -> None: ...

    def stopped(self) -> None: ...
