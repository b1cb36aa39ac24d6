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

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ipamguard.backups import copy_location, is_record, read_record
from ipamguard.bolt import Tx, load_snapshot
from ipamguard.context import Context
from ipamguard.errors import BoltError, InvalidDatabase, PodmanUnavailable, Refused, UsageError
from ipamguard.fenced import Action, Decision, Prober, write_fenced
from ipamguard.ipam.model import Allocation, IpamState, read_ipam
from ipamguard.liveness import LivenessSnapshot, collect
from ipamguard.liveness.model import connected
from ipamguard.liveness.verdict import LIVE, container_verdict
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
    kind: str = "copy"  # "copy": the whole file; "record": what one release removed


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
    plan.conflicts += misplaced(plan.added, liveness)
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
    other_file: bool = False,
) -> RestorePlan:
    """Put a backup back: a release record (what one release removed) or a full copy.

    A backup of another file than ``store``'s is refused unless ``other_file``.
    """
    if is_record(backup_path):
        return restore_record(
            store, backup_path, force=force, dry_run=dry_run, confirm=confirm,
            other_file=other_file, ctx=ctx,
        )  # fmt: skip
    _same_file(backup_path, copy_location(backup_path), store.location, other_file)
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


def restore_record(
    store: AllocationStore,
    record_path: str,
    *,
    force: bool,
    dry_run: bool,
    confirm: Callable[[RestorePlan], None] | None,
    other_file: bool,
    ctx: Context,
) -> RestorePlan:
    """Re-insert exactly what one release removed, refusing what was taken since
    (unless ``force``), through the fenced write path."""
    record = read_record(record_path)
    if record["store"] != store.kind:
        raise UsageError(
            f"{record_path} is a record of the {record['store']} store, not of {store.kind}"
        )
    _same_file(record_path, record["location"], store.location, other_file)
    plan = RestorePlan(record_path, kind="record")
    plan.added = _record_allocations(record)
    snapshot = store.read()
    holders = {a.container_id for a in plan.added}
    liveness = collect(ctx.sources(), holders) if holders else None

    def conflicts_of(wtx: WriteTx) -> list[str]:
        found = [f"{line} (taken since the release)" for line in wtx.record_conflicts(record)]
        return found + (misplaced(plan.added, liveness) if liveness is not None else [])

    def decide(wtx: WriteTx, local: LivenessSnapshot) -> Decision[RestorePlan]:
        if wtx.record_in_place(record):  # restored already, or never released: no write
            plan.added, plan.conflicts = [], []
            plan.notes.append("everything the record holds is in place already: nothing written")
            return Decision()
        plan.conflicts = conflicts_of(wtx)
        if dry_run:  # shows the conflicts, refuses nothing, writes nothing
            wtx.rollback()
            return Decision()
        if plan.conflicts and not force:
            _refuse_conflicts(plan, force)

        def apply(tx: WriteTx) -> None:
            tx.put_back(record)

        return Decision([Action([plan], [], apply)])

    if confirm is not None and not dry_run:
        confirm(plan)
    result = write_fenced(ctx, store, snapshot.fence, decide, None)
    plan.written, plan.safety_backup = result.written, result.backup
    plan.notes = result.notes + plan.notes
    return plan


def _record_allocations(record: dict[str, object]) -> list[Allocation]:
    """The allocations a record holds, as far as they can be read (for display)."""
    found = []
    summary = record.get("allocations")
    for item in summary if isinstance(summary, list) else []:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in _FIELDS):
            found.append(Allocation(*(str(item[k]) for k in _FIELDS)))
    return found


_FIELDS = ("network", "subnet", "ip", "container_id")


def _same_file(backup: str, location: str | None, live: str, other_file: bool) -> None:
    """Refuse a backup of another file than ``live`` unless ``other_file``."""
    if location is None or other_file:
        return
    try:
        same = os.path.samefile(location, live)
    except OSError:
        same = os.path.realpath(location) == os.path.realpath(live)
    if not same:
        raise Refused(
            f"{backup} is a backup of {location}, not of {live}; nothing was restored "
            "(--other-file restores it anyway)"
        )


def misplaced(added: list[Allocation], liveness: LivenessSnapshot) -> list[str]:
    """Allocations a restore would give to a live container on a network podman says it
    is not connected to: an address refused to every other container, used by none."""
    return [
        f"{a.ip} ({a.network}) would go back to live container {a.container_id[:12]}, "
        f"which podman says is not connected to {a.network}"
        for a in added
        if container_verdict(a.container_id, liveness).kind == LIVE
        and connected(a.container_id, a.network, liveness) is False
    ]


def _refuse_conflicts(plan: RestorePlan, force: bool) -> None:
    if plan.conflicts and not force:
        more = f" (and {len(plan.conflicts) - 1} more)" if len(plan.conflicts) > 1 else ""
        raise Refused(
            f"restoring would take addresses from live containers: {plan.conflicts[0]}{more}"
        )
