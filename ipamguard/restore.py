"""Putting a backup back, as one write transaction through the fenced path.

The backup is validated in full. The plan (what the restore adds and removes) is
made on the live store as read, with liveness asked after that read; the write
goes through ``ipamguard.fenced``, so it happens only if the store is still
exactly the one planned on (a container started meanwhile voids the plan), with
the local sources asked again and the addresses it would free probed on their
networks. The live file is rewritten in one transaction (crash-safe, and podman
keeps using the same file), never replaced by a rename. A restore that would take
an address away from a live container (or one whose fate nobody can tell) is
refused unless forced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipamguard.bolt import Tx, load_snapshot
from ipamguard.context import Context
from ipamguard.errors import BoltError, InvalidDatabase, PodmanUnavailable, Refused
from ipamguard.fenced import Action, Decision, Prober, write_fenced
from ipamguard.ipam.model import Allocation, IpamState, read_ipam
from ipamguard.liveness import LivenessSnapshot, collect
from ipamguard.liveness.verdict import container_verdict
from ipamguard.stores.base import AllocationStore, WriteTx


@dataclass
class RestorePlan:
    backup: str
    added: list[Allocation] = field(default_factory=list)  # in the backup, not live now
    removed: list[Allocation] = field(default_factory=list)  # live now, not in the backup
    conflicts: list[str] = field(default_factory=list)
    written: bool = False
    safety_backup: str | None = None
    notes: list[str] = field(default_factory=list)


def read_backup(path: str) -> Tx:
    """A validated, read-only transaction over a backup file."""
    try:
        with open(path, "rb") as backup:
            data = backup.read()
    except OSError as error:
        raise BoltError(f"{path}: {error.strerror}") from None
    try:
        snapshot = load_snapshot(data)
    except InvalidDatabase as error:
        raise InvalidDatabase(f"{path}: {error}") from None
    return Tx(snapshot, writable=False)


def plan_restore(
    backup_path: str, backup: IpamState, current: IpamState, liveness: LivenessSnapshot
) -> RestorePlan:
    plan = RestorePlan(backup_path)
    now = {(a.network, a.subnet, a.ip): a for a in current.allocations()}
    then = {(a.network, a.subnet, a.ip): a for a in backup.allocations()}
    plan.added = [a for k, a in then.items() if now.get(k) != a]
    plan.removed = [a for k, a in now.items() if then.get(k) != a]
    for allocation in plan.removed:
        verdict = container_verdict(allocation.container_id, liveness)
        if not verdict.releasable:
            plan.conflicts.append(
                f"{allocation.ip} ({allocation.network}) is held by {verdict.kind} container "
                f"{allocation.container_id[:12]}: the backup does not have it"
            )
    return plan


def restore(
    ctx: Context,
    store: AllocationStore,
    backup_path: str,
    *,
    force: bool,
    dry_run: bool,
    confirm: Callable[[RestorePlan], None] | None,
    prober: Prober | None,
) -> RestorePlan:
    source = read_backup(backup_path)
    backup = read_ipam(source)
    snapshot = store.read()
    holders = snapshot.state.holders() | backup.holders()
    liveness = collect(ctx.sources(), holders)
    if not liveness.complete and not force:
        raise PodmanUnavailable(
            "cannot tell which containers live (" + "; ".join(liveness.failures)
            + "); nothing was restored (--force restores anyway)"
        )  # fmt: skip
    plan = plan_restore(backup_path, backup, snapshot.state, liveness)
    if dry_run or not (plan.added or plan.removed):
        return plan
    _refuse_conflicts(plan, force)
    if confirm is not None:
        confirm(plan)
    api = collect(ctx.api_sources(), holders)

    def decide(wtx: WriteTx, local: LivenessSnapshot) -> Decision[RestorePlan]:
        fresh = plan_restore(backup_path, backup, wtx.snapshot.state, api.combined(local))
        if not force:
            if not (api.complete and local.complete):
                raise PodmanUnavailable(
                    "cannot tell which containers live right before the write ("
                    + "; ".join(api.failures + local.failures) + "); nothing was restored"
                )  # fmt: skip
            _refuse_conflicts(fresh, force)

        def apply(tx: WriteTx) -> None:
            tx.replace_all(source)

        addresses = [(a.network, a.ip) for a in fresh.removed]
        return Decision([Action([fresh], addresses, apply)])

    result = write_fenced(ctx, store, snapshot.fence, decide, None if force else prober)
    if result.refused:
        _, why = result.refused[0]
        raise Refused(f"restoring would free an address in use: {why}; nothing was restored")
    done = result.done[0] if result.done else plan
    done.written, done.safety_backup, done.notes = result.written, result.backup, result.notes
    return done


def _refuse_conflicts(plan: RestorePlan, force: bool) -> None:
    if plan.conflicts and not force:
        more = f" (and {len(plan.conflicts) - 1} more)" if len(plan.conflicts) > 1 else ""
        raise Refused(
            f"restoring would take addresses from live containers: {plan.conflicts[0]}{more}"
        )
