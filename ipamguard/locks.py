"""The two kinds of lock podman uses, with timeouts that name the holder.

- ``flock`` on ipam.db itself: bbolt's own lock (exclusive to write, shared to read).
- ``fcntl`` record locks (F_SETLK on the whole file): containers/storage lockfiles,
  i.e. podman's network lock (netavark.lock).
The two kinds do not see each other on Linux; each file gets the kind podman uses.
Nothing here blocks forever: a lock is tried without blocking, with short sleeps,
until the timeout; then ``LockTimeout`` says who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ipamguard.errors import LockTimeout, LockUnusable


def _retry(attempt: Callable[[], object], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            attempt()
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise LockTimeout(describe())
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def flock(fd: int, path: str, exclusive: bool, timeout: float) -> None:
    """Take bbolt's flock on ``fd`` (exclusive or shared) within ``timeout`` seconds."""
    operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    _retry(
        lambda: fcntl.flock(fd, operation),
        timeout,
        lambda: f"{path} is locked{holders(path, 'FLOCK')}; gave up after {timeout:g} s",
    )


def funlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def fcntl_lock(fd: int, path: str, timeout: float) -> None:
    """Take a containers/storage lockfile's write lock (F_SETLK, F_WRLCK, whole file)."""
    lock = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    _retry(
        lambda: fcntl.fcntl(fd, fcntl.F_SETLK, lock),
        timeout,
        lambda: f"{path} is locked{holders(path, 'POSIX')}; gave up after {timeout:g} s",
    )


@contextmanager
def network_locks(
    paths: list[str], timeout: float, owner: int = 0, create: bool = True
) -> Iterator[list[str]]:
    """Hold podman's network lock files, in the given (fixed) order; yield those taken.

    A missing lock file is created (``create``), as containers/storage does (podman
    creates it the same way on first use), so that a podman starting meanwhile waits
    for us. A lock that cannot be taken (a directory, a symlink, not owned by
    ``owner``, unreadable) raises LockUnusable: nothing is ever written without it.
    """
    fds: list[int] = []
    taken: list[str] = []
    try:
        for path in paths:
            if not create and not os.path.lexists(path):
                continue
            fd = _open_lock(path, owner)
            fds.append(fd)
            fcntl_lock(fd, path, timeout)
            taken.append(path)
        yield taken
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing drops the fcntl lock


def _open_lock(path: str, owner: int) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # its directory too: podman would create both
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fd = os.open(path, flags, 0o644)
    except OSError as error:
        reason = "a symlink" if error.errno == errno.ELOOP else (error.strerror or str(error))
        raise LockUnusable(
            f"cannot take podman's network lock {path}: {reason.lower()}; nothing was written"
        ) from None
    info = os.fstat(fd)
    if info.st_uid != owner:
        os.close(fd)
        raise LockUnusable(
            f"podman's network lock {path} is owned by uid {info.st_uid}, not {owner}; "
            "nothing was written"
        )
    return fd


def holders(path: str, kind: str) -> str:
    """' by pid N (cmdline)' for the processes holding a lock on ``path``, from /proc/locks."""
    try:
        stat = os.stat(path)
        with open("/proc/locks", encoding="ascii") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return ""
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or "->" in fields or fields[1] != kind or fields[5] != wanted:
            continue
        pid = fields[4]
        if pid != str(os.getpid()):
            found.append(f"pid {pid} ({_cmdline(pid)})")
    return " by " + ", ".join(found) if found else ""


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode(errors="replace") for w in words if w)[:80] or "?"
