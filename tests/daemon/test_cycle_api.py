"""CycleResult.summary: the STATUS line."""

from __future__ import annotations

from ipamguard.daemon.cycle_api import CycleResult


def test_summary() -> None:
    result = CycleResult(networks=3, allocations=120, open_findings=1, repaired=0, podman_ok=True)
    assert result.summary == "3 networks, 120 allocations, 1 open finding, repair off"
    one = CycleResult(1, 1, 0, 2, podman_ok=False, repair_enabled=True)
    assert one.summary == (
        "1 network, 1 allocation, 0 open findings, repair on, 2 repaired, podman unreachable"
    )
