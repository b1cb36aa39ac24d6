"""CNI's host-local files as an allocation store (podman's CNI backend).

A network directory per network (``/var/lib/cni/networks/NETWORK``), one file per
address holding the container ID (see ipamguard.stores.cni_files); the networks and
their ranges come from the ``.conflist`` files (ipamguard.stores.cni_config). There
is no index of IDs: a Network of this store is ``indexed`` False.

The fence is every file's stamp. A write re-reads the store, runs ``work`` without
any lock (deciding, probing), then commits under the exclusive flock of the ``lock``
file of each network directory it touches (the host-local plugin's own lock, taken
in name order): the touched directories must still hold exactly the files read
(else ``Changed``, nothing written), each planned file is removed (or put back),
the directory is synced, and the locks go. Measured in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ipamguard.errors import Changed, LockUnusable, NotFound, Refused, UsageError
from ipamguard.ipam.model import Allocation, IpamState
from ipamguard.ipam.release import MIN_PREFIX, ReleasePlan
from ipamguard.locks import flock, funlock
from ipamguard.stores.base import StoreSnapshot, WriteInfo
from ipamguard.stores.cni_config import read_cni_configs
from ipamguard.stores.cni_files import (
    LOCK_NAME,
    CniFence,
    DirStamp,
    FileStamp,
    canonical_address,
    dir_entries,
    entries_of,
    parse_address_file,
    parse_state,
    read_files,
    stamp_file,
)

if TYPE_CHECKING:
    from ipamguard.fenced import Prober

T = TypeVar("T")
FileKey = tuple[str, str]  # (network directory, file name)


class CniStore:
    kind = "cni"

    def __init__(
        self,
        data_dir: str,
        config_dir: str,
        lock_timeout: float,
        backup_dir: str,
        backups_keep: int,
        *,
        default_network: str = "podman",
        default_subnet: str = "10.88.0.0/16",
        network_locks: tuple[str, ...] | None = None,
        prober: Prober | None = None,
    ) -> None:
        self.location = data_dir
        self.config_dir = config_dir
        self.lock_timeout = lock_timeout
        self.backup_dir = backup_dir
        self.backups_keep = backups_keep
        self.default_network = default_network
        self.default_subnet = default_subnet
        self.network_locks = network_locks
        self.prober = prober

    def read(self) -> StoreSnapshot:
        fence = read_files(self.location, self.lock_timeout)
        configs = read_cni_configs(self.config_dir, self.default_network, self.default_subnet)
        return StoreSnapshot(parse_state(fence, configs), fence)

    def find(self, wanted: str, network: str | None = None) -> tuple[ReleasePlan, object]:
        snapshot = self.read()
        return plan_in_state(snapshot.state, wanted, network, self.location), snapshot.fence

    def write(self, work: Callable[[CniWriteTx], T]) -> tuple[T, WriteInfo]:
        snapshot = self.read()
        wtx = CniWriteTx(self, snapshot)
        result = work(wtx)
        if wtx.rolled_back or not (wtx.removals or wtx.additions):
            return result, WriteInfo(False, 0.0, snapshot.fence)
        hold, fence = self._commit(wtx)
        return result, WriteInfo(True, hold, fence)

    def _commit(self, wtx: CniWriteTx) -> tuple[float, CniFence]:
        fence = wtx.fence
        networks = sorted({n for n, _ in wtx.removals} | {n for n, _ in wtx.additions})
        created = {n for n, _ in wtx.additions}
        after: dict[str, DirStamp] = {}
        with contextlib.ExitStack() as stack:
            root = _open_dir(stack, None, self.location, create=bool(created))
            dirs = {n: _open_dir(stack, root, n, create=n in created) for n in networks}
            locks = {n: self._open_lock(stack, fd, n) for n, fd in dirs.items()}
            locked_at = None
            for network in networks:
                path = os.path.join(self.location, network, LOCK_NAME)
                flock(locks[network], path, True, self.lock_timeout)
                stack.callback(funlock, locks[network])
                locked_at = locked_at or time.monotonic()
            for network in networks:  # exactly the files the decision was made on?
                if not self._unchanged(wtx, network, dirs[network]):
                    raise Changed(
                        f"{os.path.join(self.location, network)} changed since it was read; "
                        "nothing was written"
                    )
            for network, name in wtx.removals:
                os.unlink(name, dir_fd=dirs[network])
            for (network, name), (content, mode) in wtx.additions.items():
                _create(dirs[network], name, content, mode)
            for network in networks:
                os.fsync(dirs[network])
                after[network] = _after(wtx, network, dirs[network])
        assert locked_at is not None
        hold = time.monotonic() - locked_at
        kept = [d for d in fence.dirs if d.network not in after]
        dirs_after = sorted([*kept, *after.values()], key=lambda d: d.network)
        root_inode = fence.root if fence.root is not None else os.stat(self.location).st_ino
        return hold, CniFence(root_inode, tuple(dirs_after))

    @staticmethod
    def _unchanged(wtx: CniWriteTx, network: str, fd: int) -> bool:
        """The directory holds the files of the snapshot (by their metadata), and each
        file to be removed is exactly as read (content and generation too)."""
        then = wtx.fence.dir(network)
        if then is not None and os.fstat(fd).st_ino != then.inode:
            return False
        if dir_entries(fd) != entries_of(then):
            return False
        planned = ((name, stamp) for (n, name), stamp in wtx.removals.items() if n == network)
        return all(stamp_file(fd, name) == stamp for name, stamp in planned)

    def _open_lock(self, stack: contextlib.ExitStack, dir_fd: int, network: str) -> int:
        """The host-local plugin's lock file, created as the plugin creates it."""
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(LOCK_NAME, flags, 0o750, dir_fd=dir_fd)
        except OSError as error:
            path = os.path.join(self.location, network, LOCK_NAME)
            raise LockUnusable(
                f"cannot take the host-local lock {path}: {(error.strerror or '').lower()}; "
                "nothing was written"
            ) from None
        stack.callback(os.close, fd)
        return fd


def _after(wtx: CniWriteTx, network: str, fd: int) -> DirStamp:
    """The directory's stamp after the commit: the snapshot's, less what went, plus what
    was created (stamped now)."""
    then = wtx.fence.dir(network)
    kept = [f for f in (then.files if then else ()) if (network, f.name) not in wtx.removals]
    made = (stamp_file(fd, name) for n, name in wtx.additions if n == network)
    files = sorted([*kept, *(f for f in made if f is not None)], key=lambda f: f.name)
    return DirStamp(network, os.fstat(fd).st_ino, tuple(files))


def _open_dir(stack: contextlib.ExitStack, parent: int | None, name: str, create: bool) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if parent else 0)
    if create:  # put back into a directory removed since: host-local makes it 0755
        with contextlib.suppress(FileExistsError):
            if parent is None:
                os.makedirs(name, 0o755)
            else:
                os.mkdir(name, 0o755, dir_fd=parent)
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as error:
        raise Changed(f"{name}: {error.strerror} (changed since it was read); "
                      "nothing was written") from None  # fmt: skip
    stack.callback(os.close, fd)
    return fd


def _create(dir_fd: int, name: str, content: bytes, mode: int) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)  # fmt: skip
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def plan_in_state(state: IpamState, wanted: str, network: str | None, location: str) -> ReleasePlan:
    """Every allocation of the container that ``wanted`` names (full ID or unique prefix)."""
    if len(wanted) < MIN_PREFIX:
        raise UsageError(f"container ID prefix {wanted!r} is too short (at least {MIN_PREFIX})")
    if network is not None and state.network(network) is None:
        raise NotFound(f"network {network!r} has no directory in {location}")
    found = [
        a for a in state.allocations()
        if a.container_id.startswith(wanted) and network in (None, a.network)
    ]  # fmt: skip
    known = {a.container_id for a in found}
    if not known:
        where = f" in network {network}" if network else ""
        raise NotFound(f"no allocation of container {wanted}{where} in {location}")
    if wanted not in known and len(known) > 1:
        raise UsageError(f"container ID prefix {wanted!r} is ambiguous: {', '.join(sorted(known))}")
    container_id = wanted if wanted in known else known.pop()
    return ReleasePlan(container_id, tuple(a for a in found if a.container_id == container_id), ())


@dataclass
class CniWriteTx:
    """The files to remove and to create, over one snapshot; written by the commit."""

    store: CniStore
    start: StoreSnapshot
    removals: dict[FileKey, FileStamp] = field(default_factory=dict)
    additions: dict[FileKey, tuple[bytes, int]] = field(default_factory=dict)  # content, mode
    rolled_back: bool = False

    @property
    def fence(self) -> CniFence:
        assert isinstance(self.start.fence, CniFence)
        return self.start.fence

    @property
    def snapshot(self) -> StoreSnapshot:
        return self.start

    def _file(self, network: str, name: str) -> FileStamp | None:
        directory = self.fence.dir(network)
        return next((f for f in directory.files if f.name == name), None) if directory else None

    def release(self, plan: ReleasePlan) -> None:
        """Remove each planned address file; each must hold the planned ID."""
        assert not plan.ids_entries, "CNI has no ids index"
        for allocation in plan.allocations:
            self._remove(allocation)

    def _remove(self, allocation: Allocation) -> None:
        stamp = self._file(allocation.network, allocation.ip)
        parsed = parse_address_file(stamp) if stamp is not None else None
        if stamp is None or isinstance(parsed, str) or parsed is None:
            raise AssertionError(f"allocation moved under the plan: {allocation}")
        if parsed[0] != allocation.container_id:
            raise AssertionError(f"allocation moved under the plan: {allocation}")
        self.removals[(allocation.network, allocation.ip)] = stamp

    def find(self, container_id: str, network: str | None = None) -> ReleasePlan:
        plan = plan_in_state(self.start.state, container_id, network, self.store.location)
        if plan.container_id != container_id:
            raise NotFound(f"no allocation of container {container_id} in {self.store.location}")
        return plan

    def delete_network(self, name: str) -> None:
        """Remove every address file of the network (its lock and last_reserved_ip.N stay)."""
        network = self.start.state.network(name)
        for allocation in (a for s in network.subnets for a in s.allocations) if network else ():
            self._remove(allocation)

    def replace_all(self, source: object) -> None:
        raise Refused("a full copy of ipam.db cannot be restored into CNI's files")

    def record_conflicts(self, record: Mapping[str, Any]) -> list[str]:
        """A record's files that are held by another container now, one line each."""
        conflicts = []
        for entry in record_files(record):
            stamp = self._file(entry.network, entry.name)
            if stamp is not None and stamp.content != entry.content:
                parsed = parse_address_file(stamp)
                holder = parsed if isinstance(parsed, str) else f"held by {parsed[0]}"
                conflicts.append(f"{entry.network}/{entry.name} is {holder} now")
        return conflicts

    def record_in_place(self, record: Mapping[str, Any]) -> bool:
        """Every file of a record there, with the content it had."""
        for entry in record_files(record):
            stamp = self._file(entry.network, entry.name)
            if stamp is None or stamp.content != entry.content:
                return False
        return True

    def put_back(self, record: Mapping[str, Any]) -> int:
        """Create every file of a record that is not there as it was; the number put."""
        count = 0
        for entry in record_files(record):
            stamp = self._file(entry.network, entry.name)
            if stamp is not None and stamp.content == entry.content:
                continue
            if stamp is not None:  # forced over another holder: its file is backed up
                self.removals[(entry.network, entry.name)] = stamp
            self.additions[(entry.network, entry.name)] = (entry.content, entry.mode)
            count += 1
        return count

    def backup(self) -> str:
        """A release record: every file removed and created, with its content."""
        from ipamguard import backups

        store = self.store
        backups.check_backup_dir(store.backup_dir, os.geteuid())
        data_dir = store.location
        removed = [_record_entry(data_dir, n, s.name, s.content, s.mode) for (n, _), s in
                   sorted(self.removals.items())]  # fmt: skip
        added = [_record_entry(data_dir, n, name, c, m) for (n, name), (c, m) in
                 sorted(self.additions.items())]  # fmt: skip
        subnets = {(a.network, a.ip): a.subnet for a in self.start.state.allocations()}
        files = sum(len(d.files) for d in self.fence.dirs)
        payload = {
            "before": {"fence": str(self.fence), "files": files},
            "removed": removed,
            "allocations": [_summary(e, subnets) for e in removed],
            "added": added,  # a restore's files: `release` undoes them
        }
        return backups.write_record(
            store.backup_dir, store.backups_keep, store.kind, store.location, payload
        )

    def rollback(self) -> None:
        self.rolled_back = True


def _record_entry(
    data_dir: str, network: str, name: str, content: bytes, mode: int
) -> dict[str, Any]:
    return {
        "network": network,
        "directory": os.path.join(data_dir, network),
        "name": name,
        "content": content.hex(),
        "mode": mode,
    }


def _summary(entry: Mapping[str, Any], subnets: Mapping[FileKey, str]) -> dict[str, str]:
    """The allocation a record entry holds, readable (for people and ``restore``)."""
    parsed = parse_address_file(_as_stamp(entry["name"], bytes.fromhex(entry["content"]), 0))
    return {
        "network": entry["network"],
        "subnet": subnets.get((entry["network"], entry["name"]), ""),
        "ip": entry["name"],
        "container_id": parsed[0] if isinstance(parsed, tuple) else "",
    }


@dataclass(frozen=True)
class RecordFile:
    network: str
    name: str
    content: bytes
    mode: int


def record_files(record: Mapping[str, Any]) -> Iterator[RecordFile]:
    """The ``removed`` files of a CNI release record, each validated (BackupError)."""
    from ipamguard.backups import BackupError

    entries = record.get("removed")
    if not isinstance(entries, list):
        raise BackupError("the record lists nothing removed")
    for entry in entries:
        try:
            network, name = entry["network"], entry["name"]
            content, mode = bytes.fromhex(entry["content"]), entry["mode"]
        except (KeyError, TypeError, ValueError):
            raise BackupError(f"a record entry that is not a CNI file: {entry!r:.80}") from None
        valid = (
            isinstance(network, str) and _plain_name(network)
            and isinstance(name, str) and canonical_address(name) == name
            and isinstance(mode, int) and 0 <= mode <= 0o777
            and isinstance(parse_address_file(_as_stamp(name, content, mode)), tuple)
        )  # fmt: skip
        if not valid:
            raise BackupError(f"a record entry that is not a CNI address file: {entry!r:.80}")
        yield RecordFile(network, name, content, mode)


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def _as_stamp(name: str, content: bytes, mode: int) -> FileStamp:
    return FileStamp(name, 0, None, len(content), 0, 0, mode, content)
