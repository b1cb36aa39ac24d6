"""Backups taken before every write, and listing them.

Two kinds live in a backup directory (0700, files 0600, written and synced before
the write they protect):

- **records** (``release.STORE.STAMP.json``): exactly what a write removed, a few
  hundred bytes: the store, the file or directory it belongs to, its fence and
  checksum before, and the store's own payload (the bbolt keys and values, or the
  CNI address files). ``restore`` puts a record back.
- **full copies** (``ipam.db.STAMP.txidN.bak``): the whole validated file the write
  started from, at most once per interval (and before the first write after boot).

Only the newest ``keep`` of each kind are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipamguard.bolt.page import FileData
from ipamguard.errors import IpamguardError

_NAME = re.compile(r"^ipam\.db\.(\d{8}T\d{6}\.\d{6}Z)\.txid(\d+)\.bak$")
_RECORD = re.compile(r"^release\.([a-z]+)\.(\d{8}T\d{6}\.\d{6}Z)\.json$")
RECORD_VERSION = 1


class BackupError(IpamguardError):
    """A backup could not be written or read; nothing was changed."""


@dataclass(frozen=True)
class BackupInfo:
    path: str
    taken: str  # UTC timestamp from the name
    txid: int  # full copies: the txid copied; records: 0
    size: int
    kind: str = "copy"  # "copy" or "record"
    store: str = "netavark"


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _write_file(backup_dir: str, name: str, data: FileData) -> str:
    """Create ``name`` in ``backup_dir`` (0600, synced, the directory synced too)."""
    try:
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        path = os.path.join(backup_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(backup_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        raise BackupError(
            f"cannot write a backup in {backup_dir}: {error.strerror}; nothing was changed"
        ) from None
    return path


def write_backup(
    data: FileData, txid: int, backup_dir: str, keep: int, location: str | None = None
) -> str:
    """Write ``data`` (a whole ipam.db) as a new full copy; return its path.

    ``location``: the file it is a copy of, recorded beside it (``COPY.json``), so
    that ``restore`` can tell a backup of another file.
    """
    name = f"ipam.db.{_stamp()}.txid{txid}.bak"
    if location is not None:
        about = {"version": RECORD_VERSION, "location": location, "txid": txid}
        _write_file(backup_dir, name + ".json", json.dumps(about).encode() + b"\n")
    path = _write_file(backup_dir, name, data)
    prune_backups(backup_dir, keep)
    return path


def copy_location(path: str) -> str | None:
    """The file a full copy was taken of (None: not recorded, e.g. an older backup)."""
    try:
        with open(path + ".json", "rb") as about:
            document = json.loads(about.read())
    except (OSError, ValueError):
        return None
    location = document.get("location") if isinstance(document, dict) else None
    return location if isinstance(location, str) else None


def full_copy_due(backup_dir: str, location: str, every: float) -> bool:
    """Is a full copy of ``location`` due: none newer than ``every`` seconds, or none
    since this machine booted?"""
    newest = 0.0
    for backup in list_backups(backup_dir):
        if backup.kind == "copy" and copy_location(backup.path) == location:
            with contextlib.suppress(OSError):
                newest = max(newest, os.stat(backup.path).st_mtime)
    return newest < max(time.time() - every, boot_time())


def boot_time() -> float:
    """When this machine booted (seconds since the epoch; 0 if unknown)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat_file:
            for line in stat_file:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


def write_record(
    backup_dir: str, keep: int, store: str, location: str, payload: Mapping[str, Any]
) -> str:
    """Write what a release removes from ``store`` at ``location``; return its path.

    ``payload`` is the store's own (JSON-ready): what ``restore`` needs to put it back.
    """
    document = {
        "version": RECORD_VERSION,
        "store": store,
        "location": location,
        "taken": time.time(),
        **payload,
    }
    data = json.dumps(document, sort_keys=True).encode() + b"\n"
    path = _write_file(backup_dir, f"release.{store}.{_stamp()}.json", data)
    prune_backups(backup_dir, keep)
    return path


def read_record(path: str) -> dict[str, Any]:
    """A record written by ``write_record`` (BackupError if it is not one)."""
    try:
        with open(path, "rb") as record:
            document = json.loads(record.read())
    except OSError as error:
        raise BackupError(f"{path}: {error.strerror}") from None
    except ValueError:
        raise BackupError(f"{path}: not a release record (not JSON)") from None
    if not isinstance(document, dict) or document.get("version") != RECORD_VERSION:
        raise BackupError(f"{path}: not a release record of version {RECORD_VERSION}")
    for key in ("store", "location"):
        if not isinstance(document.get(key), str):
            raise BackupError(f"{path}: a release record without {key!r}")
    return document


def is_record(path: str) -> bool:
    return _RECORD.match(os.path.basename(path)) is not None


def list_backups(backup_dir: str) -> list[BackupInfo]:
    """Backups in ``backup_dir``, oldest first; an absent directory has none."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise BackupError(f"cannot list {backup_dir}: {error.strerror}") from None
    found = []
    for name in names:
        copy, record = _NAME.match(name), _RECORD.match(name)
        if copy is None and record is None:
            continue
        path = os.path.join(backup_dir, name)
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        if copy is not None:
            found.append(BackupInfo(path, copy.group(1), int(copy.group(2)), size))
        elif record is not None:
            found.append(BackupInfo(path, record.group(2), 0, size, "record", record.group(1)))
    return sorted(found, key=lambda b: (b.taken, Path(b.path).name))


def prune_backups(backup_dir: str, keep: int) -> None:
    """Keep the newest ``keep`` full copies and the newest ``keep`` records."""
    backups = list_backups(backup_dir)
    for kind in ("copy", "record"):
        mine = [b for b in backups if b.kind == kind]
        for old in mine[: max(len(mine) - keep, 0)]:
            with contextlib.suppress(OSError):
                os.unlink(old.path)
            if kind == "copy":
                with contextlib.suppress(OSError):
                    os.unlink(old.path + ".json")


def check_backup_dir(backup_dir: str, owner: int) -> None:
    """Refuse a backup directory that others could tamper with (one line).

    It is opened without following symlinks; it (when it exists) must be a directory
    owned by ``owner`` and not writable by group or others. A missing one is fine
    (it is created 0700 on the first write).
    """
    try:
        fd = os.open(backup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as error:
        reason = "a symlink" if os.path.islink(backup_dir) else error.strerror
        raise BackupError(f"backup directory {backup_dir}: {reason}; nothing was changed") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if info.st_uid != owner:
        raise BackupError(
            f"backup directory {backup_dir} is owned by uid {info.st_uid}, not {owner}; "
            "nothing was changed"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BackupError(
            f"backup directory {backup_dir} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); nothing was changed"
        )
