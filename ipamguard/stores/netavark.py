"""netavark's ipam.db (bbolt) as an allocation store.

The fence is the file's identity and bbolt's txid: every commit increments the
txid, so an equal fence means the very bytes that were judged. Reads and writes
go through ipamguard.bolt: a validated copy taken under a shared flock, a commit
under the exclusive flock held for milliseconds (see ipamguard.bolt.db).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from ipamguard.bolt import DB, Bucket, Tx
from ipamguard.errors import DatabaseNotFound
from ipamguard.ipam.model import IpamState, read_ipam
from ipamguard.ipam.release import ReleasePlan, apply_release, plan_release
from ipamguard.stores.base import StoreSnapshot, WriteInfo

T = TypeVar("T")


class NetavarkStore:
    kind = "netavark"

    def __init__(self, db: str, lock_timeout: float, backup_dir: str, backups_keep: int) -> None:
        self.location = db
        self.lock_timeout = lock_timeout
        self.backup_dir = backup_dir
        self.backups_keep = backups_keep

    def read(self) -> StoreSnapshot:
        try:
            with (
                DB.open(self.location, readonly=True, timeout=self.lock_timeout) as db,
                db.view() as tx,
            ):
                return StoreSnapshot(read_ipam(tx), _fence(db, tx))
        except DatabaseNotFound:
            return StoreSnapshot(IpamState(txid=0), None)  # no allocation since boot

    def find(self, wanted: str, network: str | None = None) -> tuple[ReleasePlan, object]:
        with (
            DB.open(self.location, readonly=True, timeout=self.lock_timeout) as db,
            db.view() as tx,
        ):
            return plan_release(tx, wanted, network), _fence(db, tx)

    def write(self, work: Callable[[NetavarkWriteTx], T]) -> tuple[T, WriteInfo]:
        with DB.open(self.location, readonly=False, timeout=self.lock_timeout) as db:
            outcome: list[WriteInfo] = []

            def run(tx: Tx) -> T:
                wtx = NetavarkWriteTx(self, tx, _fence(db, tx))
                result = work(wtx)
                if tx.closed:  # rolled back: nothing to write
                    outcome.append(WriteInfo(False, 0.0, wtx.fence))
                else:
                    outcome.append(WriteInfo(True, 0.0, (wtx.fence[0], tx.txid)))
                return result

            result = db.transact(run)
            info = outcome[-1]
            if info.written:
                info = WriteInfo(True, db.last_lock_hold, info.fence)
            return result, info


class NetavarkWriteTx:
    """A bbolt write transaction seen as a store change set."""

    def __init__(self, store: NetavarkStore, tx: Tx, fence: tuple[int, int]) -> None:
        self.store = store
        self.tx = tx
        self._fence = fence
        self._state: IpamState | None = None

    @property
    def snapshot(self) -> StoreSnapshot:
        if self._state is None:
            self._state = read_ipam(self.tx)
        return StoreSnapshot(self._state, self._fence)

    @property
    def fence(self) -> tuple[int, int]:
        return self._fence

    def release(self, plan: ReleasePlan) -> None:
        apply_release(self.tx, plan)

    def find(self, container_id: str, network: str | None = None) -> ReleasePlan:
        return plan_release(self.tx, container_id, network)

    def delete_network(self, name: str) -> None:
        self.tx.delete_bucket(name.encode())

    def replace_all(self, source: object) -> None:
        """Rewrite every bucket with a backup's content, in this one transaction."""
        assert isinstance(source, Tx)
        for name, _ in list(self.tx.items()):
            self.tx.delete_bucket(name)
        for name, _ in source.items():
            copied = source.bucket(name)
            assert copied is not None
            _copy_bucket(copied, self.tx.create_bucket(name))

    def backup(self) -> str:
        from ipamguard.backups import write_backup

        snapshot = self.tx.snapshot
        return write_backup(
            snapshot.data, snapshot.meta.txid, self.store.backup_dir, self.store.backups_keep
        )

    def rollback(self) -> None:
        self.tx.rollback()


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


def _fence(db: DB, tx: Tx) -> tuple[int, int]:
    """(inode, txid) of the snapshot: a recreated file starts its txids again."""
    return (os.fstat(db.fd).st_ino, tx.snapshot.meta.txid)
