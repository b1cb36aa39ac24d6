"""``ipamguard release``: one container's allocations, by hand, through the fenced path.

The plan is read from the store (its fence noted), liveness is asked after that
read (unless ``force``: the operator vouches), the operator confirms, podman's
API is asked once more, and the write goes through ``ipamguard.fenced``: under
podman's network lock the store must still be the one read, the local sources
are asked again, the addresses are probed on their network (unless ``force``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ipamguard.context import Context
from ipamguard.errors import NotFound, Refused
from ipamguard.fenced import Action, Decision, Prober, write_fenced
from ipamguard.ipam.release import ReleasePlan
from ipamguard.liveness import LivenessSnapshot, collect
from ipamguard.liveness.verdict import container_verdict
from ipamguard.stores.base import AllocationStore, WriteTx


@dataclass(frozen=True)
class ManualRelease:
    plan: ReleasePlan
    written: bool
    txid: int | None  # after the write (or as read, for a dry run)
    lock_hold: float  # seconds the store's exclusive file lock was held
    network_locks: tuple[str, ...]
    backup: str | None = None
    notes: tuple[str, ...] = ()


def release_container(
    ctx: Context,
    store: AllocationStore,
    wanted: str,
    network: str | None,
    *,
    dry_run: bool,
    force: bool,
    confirm: Callable[[ReleasePlan], None] | None,
    prober: Prober | None,
) -> ManualRelease:
    """Release every allocation of ``wanted`` (an ID or unique prefix).

    Raises Refused (alive, or nobody can tell), NotFound, Changed (the store changed
    since it was read: run again), LockTimeout, LockUnusable.
    """
    plan, fence = store.find(wanted, network)
    txid = fence[1] if isinstance(fence, tuple) else None
    if dry_run or plan.is_empty():
        return ManualRelease(plan, False, txid, 0.0, ())
    container_id = plan.container_id
    if not force:
        _vouch(container_id, collect(ctx.sources(), {container_id}))
    if confirm is not None:
        confirm(plan)
    api = collect(ctx.api_sources(), {container_id}) if not force else None

    def decide(wtx: WriteTx, local: LivenessSnapshot) -> Decision[ReleasePlan]:
        decision: Decision[ReleasePlan] = Decision()
        if api is not None:
            _vouch(container_id, api.combined(local))
        try:
            fresh = wtx.find(container_id, network)
        except NotFound:
            return decision  # cannot be: the fence is the one it was found at
        decision.actions.append(Action([fresh], _addresses(fresh), _apply(fresh)))
        return decision

    result = write_fenced(ctx, store, fence, decide, None if force else prober, ask_local=not force)
    done = result.done[0] if result.done else ReleasePlan(container_id, (), ())
    after = result.fence[1] if isinstance(result.fence, tuple) else None
    return ManualRelease(
        done,
        result.written,
        after,
        result.lock_hold,
        tuple(result.locks),
        result.backup,
        tuple(result.notes),
    )


def _vouch(container_id: str, liveness: LivenessSnapshot) -> None:
    verdict = container_verdict(container_id, liveness)
    if not verdict.releasable:
        raise Refused(
            f"container {container_id[:12]} is {verdict.kind} ({'; '.join(verdict.evidence)}); "
            "not released (--force releases anyway)"
        )


def _addresses(plan: ReleasePlan) -> list[tuple[str, str]]:
    return [(a.network, a.ip) for a in plan.allocations]


def _apply(plan: ReleasePlan) -> Callable[[WriteTx], None]:
    def apply(wtx: WriteTx) -> None:
        wtx.release(plan)

    return apply
