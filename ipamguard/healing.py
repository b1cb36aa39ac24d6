"""check and repair: observe (ipam.db first, then liveness), reconcile, release.

The CLI and the daemon are thin shells around ``observe``, ``judge`` and
``repair``. A release happens only for a finding that is releasable and
confirmed, after liveness was asked a second time: podman's API just before
the locks are taken (asking it while holding podman's network lock could
deadlock with a ``podman start`` that holds a container lock and waits for the
network lock), then runtime state and conmon under the locks, and the
allocation is re-read under the locks right before it is deleted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ipamguard.bolt import DB, Tx
from ipamguard.errors import DatabaseNotFound, NotFound
from ipamguard.ipam.model import IpamState, read_ipam, read_network
from ipamguard.ipam.netconfig import podman_network_names
from ipamguard.ipam.paths import PodmanPaths
from ipamguard.ipam.release import ReleasePlan, apply_release, plan_release
from ipamguard.kinds import LEAKED, ORPHAN_NETWORK, STALE, STOPPED_STATES
from ipamguard.liveness import LivenessSnapshot, LivenessSource, collect
from ipamguard.reconcile import (
    Finding,
    FindingKey,
    Reconciliation,
    reconcile,
)


@dataclass(frozen=True)
class Settings:
    """Where things are and how long to wait: what check and repair need."""

    paths: PodmanPaths
    lock_timeout: float
    backups_keep: int


@dataclass
class Observation:
    state: IpamState
    liveness: LivenessSnapshot
    networks: set[str] | None
    taken_at: float


class _LivenessView:
    """A liveness snapshot as the reconciler sees it."""

    def __init__(self, snapshot: LivenessSnapshot) -> None:
        self.snapshot = snapshot

    @property
    def complete(self) -> bool:
        return self.snapshot.complete

    @property
    def failures(self) -> tuple[str, ...]:
        return self.snapshot.failures

    def state(self, container_id: str) -> str | None:
        info = self.snapshot.containers.get(container_id)
        return None if info is None else info.state

    def evidence(self, container_id: str) -> list[str]:
        return self.snapshot.evidence(container_id)


def observe(settings: Settings, sources: Sequence[LivenessSource]) -> Observation:
    """Read ipam.db, then ask liveness: an ID allocated after the read is never judged."""
    paths = settings.paths
    try:
        with (
            DB.open(paths.db, readonly=True, timeout=settings.lock_timeout) as db,
            db.view() as tx,
        ):
            state = read_ipam(tx)
    except DatabaseNotFound:
        state = IpamState(txid=0)  # podman has not allocated an address since boot
    liveness = collect(sources)
    return Observation(state, liveness, podman_network_names(paths.network_dir), time.time())


def judge(
    observation: Observation, first_seen: Mapping[FindingKey, float], grace: float
) -> Reconciliation:
    return reconcile(
        observation.state,
        _LivenessView(observation.liveness),
        observation.networks,
        observation.taken_at,
        first_seen,
        grace,
    )


@dataclass
class RepairResult:
    released: list[Finding] = field(default_factory=list)
    refused: list[tuple[Finding, str]] = field(default_factory=list)
    backup: str | None = None
    lock_hold: float = 0.0
    txid: int | None = None


def repair(
    settings: Settings,
    findings: Sequence[Finding],
    kinds: set[str],
    api_sources: Sequence[LivenessSource],
    runtime_sources: Sequence[LivenessSource],
    dry_run: bool = False,
) -> RepairResult:
    """Release the confirmed, releasable findings of ``kinds``; refuse the others."""
    result = RepairResult()
    wanted = [f for f in findings if f.kind in kinds]
    candidates = []
    for finding in wanted:
        if not finding.releasable:
            result.refused.append((finding, "not releasable: " + "; ".join(finding.evidence)))
        elif not finding.confirmed:
            result.refused.append((finding, "not confirmed yet (grace period)"))
        else:
            candidates.append(finding)
    if not candidates or dry_run:
        result.released = candidates if dry_run else []
        return result
    second = collect([*api_sources, *runtime_sources])
    if not second.complete:
        why = "liveness incomplete right before the write: " + "; ".join(second.failures)
        result.refused.extend((finding, why) for finding in candidates)
        return result
    from ipamguard.backups import write_backup
    from ipamguard.locks import network_locks

    with (
        DB.open(settings.paths.db, readonly=False, timeout=settings.lock_timeout) as db,
        network_locks(list(settings.paths.network_locks), settings.lock_timeout),
    ):
        third = collect(runtime_sources)  # no podman locks involved: safe under ours

        def still_dead(container_id: str, kind: str) -> str | None:
            return _changed(container_id, kind, second, third)

        def work(tx: Tx) -> RepairResult:
            attempt = RepairResult()
            actions = _plan(tx, candidates, still_dead, attempt)
            if not actions:
                tx.rollback()  # nothing left to do: write nothing
                return attempt
            attempt.backup = write_backup(
                    tx.snapshot.data, tx.snapshot.meta.txid, settings.paths.backup_dir,
                    settings.backups_keep,
                )  # fmt: skip
            for action in actions:
                action()
            attempt.txid = tx.txid
            return attempt

        attempt = db.transact(work)
        result.lock_hold = db.last_lock_hold if attempt.txid is not None else 0.0
    result.released = attempt.released
    result.refused.extend(attempt.refused)
    result.backup, result.txid = attempt.backup, attempt.txid
    return result


def _changed(
    container_id: str, kind: str, second: LivenessSnapshot, third: LivenessSnapshot
) -> str | None:
    """Why the container may no longer be released, or None if it still may."""
    for seen in (third, second):
        if seen.running(container_id):
            return "the container runs now (" + "; ".join(seen.evidence(container_id)) + ")"
    info = second.containers.get(container_id)
    if kind == LEAKED and (info is not None or third.exists(container_id)):
        return "the container exists now (" + "; ".join(second.evidence(container_id)) + ")"
    if kind == STALE and (info is None or info.state not in STOPPED_STATES):
        state = "gone" if info is None else info.state
        return f"the container is no longer stopped ({state})"
    return None


def _plan(
    tx: Tx,
    candidates: Sequence[Finding],
    still_dead: Callable[[str, str], str | None],
    result: RepairResult,
) -> list[Callable[[], None]]:
    """Re-read each candidate in ``tx``; the deletions to do, as closures."""
    actions: list[Callable[[], None]] = []
    by_container: dict[str, list[Finding]] = {}
    for finding in candidates:
        if finding.kind == ORPHAN_NETWORK:
            action = _plan_network(tx, finding, still_dead, result)
            if action is not None:
                actions.append(action)
        elif finding.container_id is not None:
            by_container.setdefault(finding.container_id, []).append(finding)
    for container_id, group in by_container.items():
        reason = still_dead(container_id, group[0].kind)
        if reason is not None:
            result.refused.extend((f, reason) for f in group)
            continue
        try:
            fresh = plan_release(tx, container_id)
        except NotFound:
            result.refused.extend((f, "already released meanwhile") for f in group)
            continue
        actions.append(functools.partial(apply_release, tx, _restrict(fresh, group)))
        result.released.extend(group)
    return actions


def _restrict(plan: ReleasePlan, group: Sequence[Finding]) -> ReleasePlan:
    """Only what the findings name: their IPs, and the ids entries of their networks."""
    ips = {(f.network, f.subnet, f.ip) for f in group if f.ip is not None}
    networks = {f.network for f in group}
    return ReleasePlan(
        plan.container_id,
        tuple(a for a in plan.allocations if (a.network, a.subnet, a.ip) in ips),
        tuple(e for e in plan.ids_entries if e.network in networks),
    )


def _plan_network(
    tx: Tx,
    finding: Finding,
    still_dead: Callable[[str, str], str | None],
    result: RepairResult,
) -> Callable[[], None] | None:
    network = read_network(tx, finding.network)
    if network is None:
        result.refused.append((finding, "already removed meanwhile"))
        return None
    holders = {a.container_id for s in network.subnets for a in s.allocations}
    holders.update(e.container_id for e in network.ids)
    for holder in sorted(holders):
        # a holder may be gone (as for a leak) or stopped (as for a stale one)
        reason = still_dead(holder, LEAKED) and still_dead(holder, STALE)
        if reason is not None:
            result.refused.append((finding, f"{holder[:12]}: {reason}"))
            return None
    result.released.append(finding)

    def delete_network() -> None:
        tx.delete_bucket(finding.network.encode())

    return delete_network
