"""Putting a backup back, as one bbolt write transaction under podman's locks.

The backup is validated in full; the live file is rewritten with its content
in one transaction (crash-safe, and podman keeps using the same file), never
replaced by a rename. A restore that would take an address away from a live
container, or hand a live container's address to another ID, is refused
unless forced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ipamguard.bolt import DB, Bucket, Tx, load_snapshot
from ipamguard.errors import BoltError, InvalidDatabase, PodmanUnavailable, Refused
from ipamguard.ipam.model import Allocation, IpamState, read_ipam
from ipamguard.kinds import STOPPED_STATES
from ipamguard.liveness import LivenessSnapshot, LivenessSource, collect


@dataclass
class RestorePlan:
    backup: str
    added: list[Allocation] = field(default_factory=list)  # in the backup, not live now
    removed: list[Allocation] = field(default_factory=list)  # live now, not in the backup
    conflicts: list[str] = field(default_factory=list)
    written: bool = False
    safety_backup: str | None = None


def read_backup(path: str) -> IpamState:
    try:
        with open(path, "rb") as backup:
            data = backup.read()
    except OSError as error:
        raise BoltError(f"{path}: {error.strerror}") from None
    try:
        snapshot = load_snapshot(data)
    except InvalidDatabase as error:
        raise InvalidDatabase(f"{path}: {error}") from None
    return read_ipam(Tx(snapshot, writable=False))


def plan_restore(backup_path: str, current: IpamState, liveness: LivenessSnapshot) -> RestorePlan:
    backup = read_backup(backup_path)
    plan = RestorePlan(backup_path)
    now = {(a.network, a.subnet, a.ip): a for a in current.allocations()}
    then = {(a.network, a.subnet, a.ip): a for a in backup.allocations()}
    plan.added = [a for k, a in then.items() if now.get(k) != a]
    plan.removed = [a for k, a in now.items() if then.get(k) != a]
    for allocation in plan.removed:
        if _alive(allocation.container_id, liveness):
            plan.conflicts.append(
                f"{allocation.ip} ({allocation.network}) is held by live container "
                f"{allocation.container_id[:12]}: the backup does not have it"
            )
    return plan


def _alive(container_id: str, liveness: LivenessSnapshot) -> bool:
    info = liveness.containers.get(container_id)
    return info is not None and info.state not in STOPPED_STATES


def restore(
    backup_path: str,
    db_path: str,
    sources: Sequence[LivenessSource],
    lock_paths: Sequence[str],
    timeout: float,
    backup_dir: str,
    keep: int,
    *,
    force: bool,
    dry_run: bool,
) -> RestorePlan:
    from ipamguard.backups import write_backup
    from ipamguard.locks import network_locks

    with DB.open(db_path, readonly=dry_run, timeout=timeout) as db:
        with db.view() as tx:
            current = read_ipam(tx)
        liveness = collect(sources)
        if not liveness.complete and not force:
            raise PodmanUnavailable(
                "cannot tell which containers live (" + "; ".join(liveness.failures)
                + "); nothing was restored (--force restores anyway)"
            )  # fmt: skip
        plan = plan_restore(backup_path, current, liveness)
        if plan.conflicts and not force and not dry_run:
            raise Refused(
                f"restoring would take addresses from live containers: {plan.conflicts[0]}"
                + (f" (and {len(plan.conflicts) - 1} more)" if len(plan.conflicts) > 1 else "")
            )
        if dry_run:
            return plan
        with open(backup_path, "rb") as backup_file:
            source = Tx(load_snapshot(backup_file.read()), writable=False)
        with network_locks(list(lock_paths), timeout):

            def work(tx: Tx) -> str:
                safety = write_backup(tx.snapshot.data, tx.snapshot.meta.txid, backup_dir, keep)
                for name, _ in list(tx.items()):
                    tx.delete_bucket(name)
                for name, _ in source.items():
                    copied = source.bucket(name)
                    assert copied is not None
                    _copy_bucket(copied, tx.create_bucket(name))
                return safety

            plan.safety_backup = db.transact(work)
            plan.written = True
    return plan


def _copy_bucket(source: Bucket, target: Bucket) -> None:
    for key, value in source.items():
        if value is None:
            child = source.bucket(key)
            assert child is not None
            _copy_bucket(child, target.create_bucket(key))
        else:
            target.put(key, value)
    if source.sequence:
        target.set_sequence(source.sequence)
