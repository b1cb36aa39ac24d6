"""check and repair: observe (the store first, then liveness), judge, release.

The CLI and the daemon are thin shells around ``observe``, ``judge`` and
``repair``. A release happens only for a finding that is releasable and
confirmed; podman's API is asked a second time right before podman's locks are
taken, and the write goes through ``ipamguard.fenced``: under the locks, the
store must still be exactly the one judged, the local sources are asked again,
the verdict is made again, and every address is probed on its network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ipamguard.context import Context
from ipamguard.fenced import Action, Decision, Prober, write_fenced
from ipamguard.ipam.model import IpamState, Network
from ipamguard.ipam.netconfig import podman_network_names
from ipamguard.ipam.release import ReleasePlan, plan_from_state
from ipamguard.kinds import LEAKED, ORPHAN_NETWORK, STALE
from ipamguard.liveness import Interest, LivenessSnapshot, collect
from ipamguard.liveness.verdict import ABSENT, TORN_DOWN, container_verdict
from ipamguard.reconcile import Finding, FindingKey, Reconciliation, reconcile
from ipamguard.stores.base import AllocationStore, StoreSnapshot, WriteTx

# the verdict a finding of each kind was made on, and must still be under the locks
VERDICT_OF = {LEAKED: ABSENT, STALE: TORN_DOWN}


@dataclass
class Observation:
    store: str  # the store's kind ("netavark", "cni")
    state: IpamState
    fence: object  # the store's fence at the read
    liveness: LivenessSnapshot
    networks: set[str] | None
    taken_at: float
    only: frozenset[str] | None = None  # a focused look: the containers asked about


def observe(
    ctx: Context,
    store: AllocationStore,
    only_of: Callable[[StoreSnapshot], tuple[frozenset[str], frozenset[str]] | None] | None = None,
) -> Observation:
    """Read the store, then ask liveness: an ID allocated after the read is never judged.

    ``only_of(snapshot)``, a focused look: (the containers to judge again, those of them
    that hold something and are asked about); None: every container.
    """
    snapshot = store.read()
    focused = only_of(snapshot) if only_of is not None else None
    only = None
    if focused is None:
        liveness = collect(ctx.sources(), snapshot.state.holders())
    else:
        only, asked = focused
        liveness = _focused_liveness(ctx, asked)
    networks = None  # unknown: no network is judged orphaned
    if ctx.networks_known:
        networks = podman_network_names(ctx.paths.network_dir, ctx.paths.default_network)
    return Observation(
        store.kind, snapshot.state, snapshot.fence, liveness, networks, time.time(), only
    )


def _focused_liveness(ctx: Context, only: frozenset[str]) -> LivenessSnapshot:
    """Liveness of ``only``: the sources that take no podman lock first; podman itself
    only for the containers none of them sees (any of them seeing one makes it live:
    its runtime state or its conmon exists), which spares podman's API, whose filtered
    list costs it as much as a full one."""
    if not only:
        return LivenessSnapshot(time.time(), {})
    local = collect(ctx.local_sources(), Interest.of(only, only))
    unseen = frozenset(cid for cid in only if not local.seen(cid))
    if not unseen:
        return local
    return collect(ctx.api_sources(), Interest.of(unseen, unseen)).combined(local)


def judge(
    observation: Observation,
    first_seen: Mapping[FindingKey, float],
    grace: float,
    previous: Reconciliation | None = None,
) -> Reconciliation:
    """The findings; a focused observation keeps ``previous``'s for the others."""
    return reconcile(
        observation.state,
        observation.liveness,
        observation.networks,
        observation.taken_at,
        first_seen,
        grace,
        observation.store,
        observation.only,
        previous,
    )


@dataclass
class RepairResult:
    released: list[Finding] = field(default_factory=list)
    refused: list[tuple[Finding, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backup: str | None = None
    lock_hold: float = 0.0
    txid: int | None = None


def repair(
    ctx: Context,
    store: AllocationStore,
    observation: Observation,
    findings: Sequence[Finding],
    kinds: set[str],
    prober: Prober | None,
    dry_run: bool = False,
) -> RepairResult:
    """Release the confirmed, releasable findings of ``kinds``; refuse the others.

    Raises ``Changed`` when the store changed since ``observation`` (look again).
    """
    result = RepairResult()
    candidates = []
    for finding in (f for f in findings if f.kind in kinds):
        if not finding.releasable:
            result.refused.append((finding, "not releasable: " + "; ".join(finding.evidence)))
        elif not finding.confirmed:
            result.refused.append((finding, "not confirmed yet (grace period)"))
        else:
            candidates.append(finding)
    if not candidates or dry_run:
        result.released = candidates if dry_run else []
        return result
    holders = observation.state.holders()
    second = collect(ctx.api_sources(), holders)  # never under podman's locks
    if not second.complete:
        why = "podman could not be asked right before the write: " + "; ".join(second.failures)
        result.refused.extend((finding, why) for finding in candidates)
        return result

    def decide(wtx: WriteTx, local: LivenessSnapshot) -> Decision[Finding]:
        return _decide(wtx.snapshot.state, candidates, second.combined(local))

    written = write_fenced(ctx, store, observation.fence, decide, prober)
    result.released, result.notes, result.backup = written.done, written.notes, written.backup
    result.refused.extend(written.refused)
    result.lock_hold = written.lock_hold if written.written else 0.0
    fence = written.fence
    result.txid = fence[1] if written.written and isinstance(fence, tuple) else None
    return result


def _decide(
    state: IpamState, candidates: Sequence[Finding], liveness: LivenessSnapshot
) -> Decision[Finding]:
    decision: Decision[Finding] = Decision()
    by_container: dict[str, list[Finding]] = {}
    for finding in candidates:
        if finding.kind == ORPHAN_NETWORK:
            _decide_network(state, finding, liveness, decision)
        elif finding.container_id is not None:
            by_container.setdefault(finding.container_id, []).append(finding)
    for container_id, group in by_container.items():
        verdict = container_verdict(container_id, liveness)
        if verdict.kind != VERDICT_OF.get(group[0].kind):
            why = f"now {verdict.kind}: " + "; ".join(verdict.evidence)
            decision.refused.extend((f, why) for f in group)
            continue
        plan = _restrict(plan_from_state(state, container_id), group)
        if plan.is_empty():
            decision.refused.extend((f, "already released meanwhile") for f in group)
            continue
        decision.actions.append(_release_action(group, plan))
    return decision


def _release_action(items: list[Finding], plan: ReleasePlan) -> Action[Finding]:
    def apply(wtx: WriteTx) -> None:
        wtx.release(plan)

    addresses = [(a.network, a.ip) for a in plan.allocations]
    return Action(items, addresses, apply)


def _restrict(plan: ReleasePlan, group: Sequence[Finding]) -> ReleasePlan:
    """Only what the findings name: their IPs, and the ids entries of their networks."""
    ips = {(f.network, f.subnet, f.ip) for f in group if f.ip is not None}
    networks = {f.network for f in group}
    return ReleasePlan(
        plan.container_id,
        tuple(a for a in plan.allocations if (a.network, a.subnet, a.ip) in ips),
        tuple(e for e in plan.ids_entries if e.network in networks),
    )


def _decide_network(
    state: IpamState, finding: Finding, liveness: LivenessSnapshot, decision: Decision[Finding]
) -> None:
    network = state.network(finding.network)
    if network is None:
        decision.refused.append((finding, "already removed meanwhile"))
        return
    for holder in sorted(_holders(network)):
        verdict = container_verdict(holder, liveness)
        if not verdict.releasable:
            why = f"{holder[:12]} is {verdict.kind}: " + "; ".join(verdict.evidence)
            decision.refused.append((finding, why))
            return

    def apply(wtx: WriteTx) -> None:
        wtx.delete_network(finding.network)

    addresses = [(a.network, a.ip) for s in network.subnets for a in s.allocations]
    decision.actions.append(Action([finding], addresses, apply))


def _holders(network: Network) -> set[str]:
    holders = {a.container_id for s in network.subnets for a in s.allocations}
    holders.update(e.container_id for e in network.ids)
    return holders
