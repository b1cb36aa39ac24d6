"""netavark's ipam.db (bbolt) as an allocation store.

The fence is the file's identity and bbolt's txid: every commit increments the
txid, so an equal fence means the very bytes that were judged. Reads and writes
go through ipamguard.bolt: a validated copy taken under a shared flock, a commit
under the exclusive flock held for milliseconds (see ipamguard.bolt.db).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ipamguard.bolt import DB, Bucket, Tx
from ipamguard.errors import DatabaseNotFound
from ipamguard.ipam.model import (
    IDS_BUCKET,
    IpamState,
    PageCache,
    ip_from_key,
    ip_to_key,
    printable,
    read_ipam,
)
from ipamguard.ipam.release import ReleasePlan, apply_release, plan_release
from ipamguard.stores.base import StoreSnapshot, WriteInfo

if TYPE_CHECKING:
    from ipamguard.fenced import Prober

T = TypeVar("T")


FULL_COPY_EVERY = 3600.0  # seconds: a full copy of ipam.db at most this often


class NetavarkStore:
    kind = "netavark"

    def __init__(
        self,
        db: str,
        lock_timeout: float,
        backup_dir: str,
        backups_keep: int,
        full_copy_every: float = FULL_COPY_EVERY,
        network_locks: tuple[str, ...] | None = None,
    ) -> None:
        self.location = db
        self.lock_timeout = lock_timeout
        self.backup_dir = backup_dir
        self.backups_keep = backups_keep
        self.full_copy_every = full_copy_every
        self.network_locks = network_locks  # None: the context's (ctx.paths.network_locks)
        self.prober: Prober | None = None  # the caller's (netavark's configs)
        self.cache: PageCache | None = None  # set by a caller that reads again and again

    def read(self) -> StoreSnapshot:
        try:
            with (
                DB.open(self.location, readonly=True, timeout=self.lock_timeout) as db,
                db.view() as tx,
            ):
                return StoreSnapshot(read_ipam(tx, self.cache), _fence(db, tx))
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
        self.removed: list[dict[str, Any]] = []  # every key/value the changes delete
        self.added: list[dict[str, Any]] = []  # every key/value put_back adds
        self.rewritten = False  # replace_all: the whole file changes

    @property
    def snapshot(self) -> StoreSnapshot:
        if self._state is None:
            self._state = read_ipam(self.tx)
        return StoreSnapshot(self._state, self._fence)

    @property
    def fence(self) -> tuple[int, int]:
        return self._fence

    def release(self, plan: ReleasePlan) -> None:
        for a in plan.allocations:
            path = [a.network.encode(), a.subnet.encode()]
            self._removing(path, ip_to_key(a.ip), a.container_id.encode())
        for e in plan.ids_entries:
            network = self.tx.bucket(e.network.encode())
            ids = network.bucket(IDS_BUCKET) if network else None
            value = ids.get(e.container_id.encode()) if ids else None
            if value is not None:
                self._removing([e.network.encode(), IDS_BUCKET], e.container_id.encode(), value)
        apply_release(self.tx, plan)

    def _removing(self, path: list[bytes], key: bytes, value: bytes) -> None:
        self.removed.append({"bucket": [p.hex() for p in path], "key": key.hex(),
                             "value": value.hex()})  # fmt: skip

    def find(self, container_id: str, network: str | None = None) -> ReleasePlan:
        return plan_release(self.tx, container_id, network)

    def delete_network(self, name: str) -> None:
        bucket = self.tx.bucket(name.encode())
        if bucket is not None:
            self._removing_bucket([name.encode()], bucket)
        self.tx.delete_bucket(name.encode())

    def _removing_bucket(self, path: list[bytes], bucket: Bucket) -> None:
        """Every key of the bucket's subtree (empty buckets as a key of none)."""
        empty = True
        for key, value in bucket.items():
            empty = False
            if value is None:
                child = bucket.bucket(key)
                assert child is not None
                self._removing_bucket([*path, key], child)
            else:
                self._removing(path, key, value)
        if empty:
            self.removed.append({"bucket": [p.hex() for p in path], "key": None, "value": None})

    def replace_all(self, source: object) -> None:
        """Rewrite every bucket with a backup's content, in this one transaction."""
        assert isinstance(source, Tx)
        self.rewritten = True
        for name, _ in list(self.tx.items()):
            self.tx.delete_bucket(name)
        for name, _ in source.items():
            copied = source.bucket(name)
            assert copied is not None
            _copy_bucket(copied, self.tx.create_bucket(name))

    def record_conflicts(self, record: Mapping[str, Any]) -> list[str]:
        """What a record would put back over something else that holds it now."""
        conflicts = []
        for path, key, value in _record_keys(record):
            bucket = self._bucket(path)
            now = bucket.get(key) if bucket is not None else None
            if now is not None and now != value:
                where = "/".join(printable(p) for p in path)
                conflicts.append(f"{where} {_shown_key(key)} is held by {printable(now)} now")
        return conflicts

    def record_in_place(self, record: Mapping[str, Any]) -> bool:
        """Every bucket and key of a record there, with the value it had."""
        for path, key, value in _record_keys(record, buckets_too=True):
            bucket = self._bucket(path)
            if bucket is None or (key is not None and bucket.get(key) != value):
                return False
        return True

    def put_back(self, record: Mapping[str, Any]) -> int:
        """Re-insert every key of a record (buckets created as needed); the number put."""
        count = 0
        for path, key, value in _record_keys(record, buckets_too=True):
            bucket = self.tx.create_bucket_if_not_exists(path[0])
            for name in path[1:]:
                bucket = bucket.create_bucket_if_not_exists(name)
            if key is None or value is None:
                continue
            old = bucket.get(key)
            if old == value:
                continue
            if old is not None:  # forced over a holder: that holder's value is backed up
                self._removing(path, key, old)
            self.added.append({"bucket": [p.hex() for p in path], "key": key.hex(),
                               "value": value.hex()})  # fmt: skip
            bucket.put(key, value)
            count += 1
        return count

    def _bucket(self, path: list[bytes]) -> Bucket | None:
        bucket = self.tx.bucket(path[0]) if path else None
        for name in path[1:]:
            bucket = bucket.bucket(name) if bucket is not None else None
        return bucket

    def backup(self) -> str:
        """A record of what the changes remove; a full copy of the file too when the
        whole file is rewritten, or when none was taken for a while (or since boot)."""
        from ipamguard import backups

        store, snapshot = self.store, self.tx.snapshot
        before = {
            "txid": snapshot.meta.txid,
            "inode": self._fence[0],
            "sha256": hashlib.sha256(snapshot.data).hexdigest(),
            "size": len(snapshot.data),
        }
        backups.check_backup_dir(store.backup_dir, os.geteuid())
        copy = None
        if self.rewritten or backups.full_copy_due(
            store.backup_dir, store.location, store.full_copy_every
        ):
            copy = backups.write_backup(
                snapshot.data, snapshot.meta.txid, store.backup_dir, store.backups_keep,
                location=store.location,
            )  # fmt: skip
        if self.rewritten:
            assert copy is not None
            return copy
        payload = {
            "before": before,
            "removed": self.removed,
            "allocations": _allocations(self.removed),
            "added": self.added,  # a restore's additions: `release` undoes them
            "full_copy": copy,
        }
        return backups.write_record(
            store.backup_dir, store.backups_keep, self.store.kind, store.location, payload
        )

    def rollback(self) -> None:
        self.tx.rollback()


def _record_keys(
    record: Mapping[str, Any], buckets_too: bool = False
) -> Iterator[tuple[list[bytes], Any, Any]]:
    """(bucket path, key, value) of a record's ``removed`` entries (BackupError if bad)."""
    from ipamguard.backups import BackupError

    entries = record.get("removed")
    if not isinstance(entries, list):
        raise BackupError("the record lists nothing removed")
    for entry in entries:
        try:
            path = [bytes.fromhex(p) for p in entry["bucket"]]
            key = None if entry["key"] is None else bytes.fromhex(entry["key"])
            value = None if entry["value"] is None else bytes.fromhex(entry["value"])
        except (KeyError, TypeError, ValueError):
            raise BackupError(f"a record entry that is not a bbolt key: {entry!r:.80}") from None
        if not path or (key is None) != (value is None):
            raise BackupError(f"a record entry that is not a bbolt key: {entry!r:.80}")
        if key is not None or buckets_too:  # key None: an empty bucket that was deleted
            yield path, key, value


def _allocations(removed: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The IP allocations among removed keys, readable (for people and `restore`)."""
    found = []
    for entry in removed:
        path, key, value = entry["bucket"], entry["key"], entry["value"]
        if len(path) != 2 or key is None or bytes.fromhex(path[1]) == IDS_BUCKET:
            continue
        ip = ip_from_key(bytes.fromhex(key))
        if ip is not None:
            found.append({
                "network": printable(bytes.fromhex(path[0])),
                "subnet": printable(bytes.fromhex(path[1])),
                "ip": ip,
                "container_id": printable(bytes.fromhex(value)),
            })  # fmt: skip
    return found


def _shown_key(key: bytes) -> str:
    return ip_from_key(key) or printable(key)


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
