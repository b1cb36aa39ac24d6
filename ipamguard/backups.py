"""Backups of ipam.db taken before every write, and listing them.

A backup is the exact validated copy of the file that a write transaction
started from (the bytes ipamguard read under bbolt's lock), written 0600 into
the backup directory (0700) and synced; only the newest ``keep`` are kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ipamguard.errors import IpamguardError

_NAME = re.compile(r"^ipam\.db\.(\d{8}T\d{6}\.\d{6}Z)\.txid(\d+)\.bak$")


class BackupError(IpamguardError):
    """A backup could not be written or read; nothing was changed."""


@dataclass(frozen=True)
class BackupInfo:
    path: str
    taken: str  # UTC timestamp from the name
    txid: int
    size: int


def write_backup(data: bytes, txid: int, backup_dir: str, keep: int) -> str:
    """Write ``data`` as a new backup; return its path. Raises BackupError."""
    try:
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        micros = f"{time.time() % 1:.6f}"[2:]
        path = os.path.join(backup_dir, f"ipam.db.{stamp}.{micros}Z.txid{txid}.bak")
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
    prune_backups(backup_dir, keep)
    return path


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
        match = _NAME.match(name)
        if match is None:
            continue
        path = os.path.join(backup_dir, name)
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        found.append(BackupInfo(path, match.group(1), int(match.group(2)), size))
    return sorted(found, key=lambda b: Path(b.path).name)


def prune_backups(backup_dir: str, keep: int) -> None:
    backups = list_backups(backup_dir)
    for old in backups[: max(len(backups) - keep, 0)]:
        with contextlib.suppress(OSError):
            os.unlink(old.path)
