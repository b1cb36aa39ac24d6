"""A reconcile's counts for metrics and the state file (``CycleMeasures``).

Pure: from what the cycle observed (each store's state), judged (its findings)
and did (the repair results) to counts per network, subnet, kind and reason.
Container IDs and addresses never leave here: label sets stay bounded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from ipamguard.capacity import GatewayKey, SubnetCapacity, subnet_capacities
from ipamguard.daemon.cycle_api import CycleMeasures
from ipamguard.healing import RepairResult
from ipamguard.ipam.model import IpamState
from ipamguard.kinds import ORPHAN_NETWORK
from ipamguard.reconcile import Finding

# Why a release was refused, as a short category (the journal has the full text).
PODMAN_UNREACHABLE = "podman-unreachable"  # podman's API did not answer right before the write
NOW_LIVE = "now-live"  # the container turned out to be alive under the locks
NOW_UNKNOWN = "liveness-unknown"  # a local source could not answer under the locks
VERDICT_CHANGED = "verdict-changed"  # another verdict under the locks (e.g. stale -> leaked)
ALREADY_RELEASED = "already-released"  # podman (or someone) released it meanwhile
IN_USE = "in-use-on-network"  # the address answered an ARP/NDP probe on its bridge
NETWORK_HELD = "network-held"  # an orphaned network still held by a live/unknown container
NOT_RELEASABLE = "not-releasable"
NOT_CONFIRMED = "not-confirmed"
OTHER = "other"
REFUSAL_REASONS = (
    PODMAN_UNREACHABLE, NOW_LIVE, NOW_UNKNOWN, VERDICT_CHANGED, ALREADY_RELEASED, IN_USE,
    NETWORK_HELD, NOT_RELEASABLE, NOT_CONFIRMED, OTHER,
)  # fmt: skip

_PREFIXES = (
    ("podman could not be asked", PODMAN_UNREACHABLE),
    ("now live", NOW_LIVE),
    ("now unknown", NOW_UNKNOWN),
    ("now ", VERDICT_CHANGED),
    ("already ", ALREADY_RELEASED),
    ("in use on the network", IN_USE),
    ("not releasable", NOT_RELEASABLE),
    ("not confirmed", NOT_CONFIRMED),
)
_HELD = re.compile(r"^\S+ is [a-z-]+:")  # "<container> is live: ..." (healing._decide_network)


def refusal_reason(text: str) -> str:
    """The category of a refusal's text (healing.py and fenced.py word them)."""
    for prefix, reason in _PREFIXES:
        if text.startswith(prefix):
            return reason
    return NETWORK_HELD if _HELD.match(text) else OTHER


def measure(
    observed: Sequence[tuple[str, IpamState]],
    findings: Sequence[Finding],
    outcomes: Sequence[RepairResult],
    gateways: Mapping[GatewayKey, str],
) -> CycleMeasures:
    """``observed``: (store kind, state) as read; ``findings``: as judged on them;
    ``outcomes``: what the repairs did (released findings are no longer open)."""
    released = [f for outcome in outcomes for f in outcome.released]
    gone = {f.key for f in released}
    still_open = [f for f in findings if f.key not in gone] if gone else findings
    open_findings = Counter((f.store, f.network, f.kind) for f in still_open)
    deleted = {(f.store, f.network) for f in released if f.kind == ORPHAN_NETWORK}
    networks = sorted(
        {(store, n.name) for store, state in observed for n in state.networks} - deleted
    )
    freed = Counter((f.store, f.network, f.subnet) for f in released if f.ip is not None)
    subnets = [
        _minus(capacity, freed[(capacity.store, capacity.network, capacity.subnet)])
        for store, state in observed
        for capacity in subnet_capacities(state, gateways, store)
        if (store, capacity.network) not in deleted
    ]
    holds = [outcome.lock_hold for outcome in outcomes if outcome.lock_hold > 0]
    return CycleMeasures(
        findings=dict(open_findings),
        networks=tuple(networks),
        subnets=tuple(subnets),
        released=dict(Counter(f.kind for f in released)),
        refused=dict(
            Counter(refusal_reason(why) for outcome in outcomes for _, why in outcome.refused)
        ),
        lock_hold_seconds=holds[-1] if holds else None,
    )


def _minus(capacity: SubnetCapacity, released: int) -> SubnetCapacity:
    if not released:
        return capacity
    return SubnetCapacity(
        capacity.store, capacity.network, capacity.subnet, capacity.size,
        max(capacity.allocated - released, 0), capacity.gateway,
    )  # fmt: skip
