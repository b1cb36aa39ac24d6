"""What the service needs from a reconcile cycle, and what a cycle reports back.

The service runs ``Cycle.run`` in a worker thread, never two at once; the cycle
reads ipam.db, asks liveness, reports (and, with repair on, releases) and returns
a ``CycleResult``. Errors it cannot handle are raised as ``IpamguardError``
(``LockTimeout``, ``PodmanUnavailable``, a ``BoltError`` for an unreadable
ipam.db): the service logs them with their MESSAGE_ID and retries later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ipamguard.config import Config


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

    def run(self, reason: str, config: Config) -> CycleResult: ...
