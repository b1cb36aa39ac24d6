"""inotify on ipam.db's directory as triggers (pyinotify, driven by the event loop).

The directory is watched, not the file: podman may create ipam.db after boot, and
a tool may replace it by rename. Writes (IN_MODIFY, IN_CLOSE_WRITE), creation,
deletion and renames of ipam.db push ``Trigger("db-changed")``. When the directory
does not exist yet (no podman network used since boot), its nearest existing
ancestor is watched for new directories until the path is complete; when the
directory goes away, the watch falls back the same way.

Under podman's CNI backend (``podman_cni_dir``), CNI's host-local files are watched
too (``CniWatch``): the data directory and every network directory in it, those
created later included; any file but ``lock`` created, written, renamed or deleted
pushes the same trigger.

No thread, no polling: the inotify descriptor sits in the event loop
(``loop.add_reader``); pyinotify only decodes what was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings

with warnings.catch_warnings():
    # pyinotify imports asyncore: deprecated in 3.11 (and gone in 3.12, where the
    # pyasyncore package provides it)
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyinotify  # type: ignore[import-untyped]

import structlog

from ipamguard.daemon.triggers import Push, Trigger

# pyinotify logs to its own stderr handler at import; send its records the usual way
logging.getLogger("pyinotify").handlers.clear()

DB_EVENTS = (
    pyinotify.IN_CLOSE_WRITE
    | pyinotify.IN_MODIFY
    | pyinotify.IN_MOVED_TO
    | pyinotify.IN_MOVED_FROM
    | pyinotify.IN_CREATE
    | pyinotify.IN_DELETE
)
SELF_EVENTS = pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF | pyinotify.IN_IGNORED
ANCESTOR_EVENTS = pyinotify.IN_CREATE | pyinotify.IN_MOVED_TO

LOCK_FILE = "lock"  # the host-local plugin's flock: opening it is no change

log = structlog.get_logger(__name__)


def nearest_existing_dir(path: str) -> str:
    """``path`` if it is a directory, else its nearest ancestor that is one."""
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


class _InotifyWatch:
    """The plumbing both watches share: an inotify descriptor read by the event loop,
    pyinotify decoding what was read, and the trigger pushed for a change. A subclass
    says what to watch (``_watch``) and what an event means (``_on_event``)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._push: Push | None = None
        self._manager: pyinotify.WatchManager | None = None
        self._notifier: pyinotify.Notifier | None = None
        self._fd: int | None = None
        self.watched: str | None = None  # the directory watched now

    def _begin(
        self, loop: asyncio.AbstractEventLoop, push: Push, failure: str, **where: str
    ) -> None:
        """Watch from now on; ``failure`` (with ``where``) is logged if inotify cannot."""
        self._loop, self._push = loop, push
        try:
            self._manager = pyinotify.WatchManager()
        except (OSError, pyinotify.PyinotifyError) as error:  # e.g. max_user_instances
            log.error(failure, **where, error=str(error))
            return
        self._notifier = pyinotify.Notifier(self._manager, default_proc_fun=self._on_event)
        self._watch()
        self._fd = self._manager.get_fd()
        loop.add_reader(self._fd, self._on_readable)

    def stop(self) -> None:
        if self._notifier is None or self._loop is None or self._fd is None:
            return
        self._loop.remove_reader(self._fd)
        self._notifier.stop()  # closes the inotify descriptor: every watch goes with it
        self._notifier = self._manager = None
        self._fd = None
        self.watched = None

    def _on_readable(self) -> None:
        if self._notifier is not None:
            self._notifier.read_events()
            self._notifier.process_events()

    def _watch(self) -> None:
        raise NotImplementedError

    def _on_event(self, event: pyinotify.Event) -> None:
        raise NotImplementedError

    def _emit(self, reason: str) -> None:
        if self._push is not None:
            self._push(Trigger("db-changed", None, reason))


class DbWatch(_InotifyWatch):
    """A ``TriggerSource`` for changes of the ipam.db file at ``db_path``, and of CNI's
    files in ``cni_dir`` ("": those of the same podman, ``podman_cni_dir``; None: none)."""

    def __init__(self, db_path: str, cni_dir: str | None = "") -> None:
        super().__init__()
        if cni_dir == "":
            cni_dir = podman_cni_dir(db_path)
        self.cni = CniWatch(cni_dir) if cni_dir else None
        self.db_path = os.path.abspath(db_path)
        self.db_dir, self.db_name = os.path.split(self.db_path)
        self._wd: int | None = None

    def start(self, loop: asyncio.AbstractEventLoop, push: Push) -> None:
        if self.cni is not None:
            self.cni.start(loop, push)
        failure = "cannot watch ipam.db (podman's events and the resync still apply)"
        self._begin(loop, push, failure, db=self.db_path)

    def stop(self) -> None:
        if self.cni is not None:
            self.cni.stop()
        super().stop()
        self._wd = None

    def _watch(self) -> None:
        """Watch ipam.db's directory or, while it is missing, its nearest ancestor."""
        assert self._manager is not None
        if self._wd is not None:
            with contextlib.suppress(pyinotify.WatchManagerError):  # gone with its directory
                self._manager.rm_watch(self._wd, quiet=False)
            self._wd = None
        for _attempt in range(10):  # directories may come and go while we look
            target = nearest_existing_dir(self.db_dir)
            mask = (DB_EVENTS if target == self.db_dir else ANCESTOR_EVENTS) | SELF_EVENTS
            try:
                wds = self._manager.add_watch(target, mask | pyinotify.IN_ONLYDIR, quiet=False)
            except pyinotify.WatchManagerError:
                continue
            wd = wds.get(target, -1)
            if wd < 0:
                continue
            self._wd, self.watched = wd, target
            if nearest_existing_dir(self.db_dir) == target:
                log.debug("watching for changes of ipam.db", directory=target, db=self.db_path)
                return
            self._manager.rm_watch(wd)  # a deeper directory appeared meanwhile
            self._wd = self.watched = None
        log.error(
            "cannot watch ipam.db's directory (podman's events and the resync still apply)",
            db=self.db_path, directory=nearest_existing_dir(self.db_dir),
        )  # fmt: skip

    def _on_event(self, event: pyinotify.Event) -> None:
        mask = event.mask
        if mask & pyinotify.IN_Q_OVERFLOW:
            self._emit("inotify queue overflow")
            return
        if event.wd != self._wd:
            return  # a watch removed meanwhile
        if mask & SELF_EVENTS:
            self._watch()
            self._emit(f"{self.watched} changed: watching again")
        elif self.watched == self.db_dir:
            if event.name == self.db_name and mask & DB_EVENTS:
                self._emit(f"{event.maskname} {self.db_name}")
        elif mask & pyinotify.IN_ISDIR:
            self._watch()  # a directory on the way to ipam.db appeared
            if self.watched == self.db_dir and os.path.exists(self.db_path):
                self._emit(f"{self.db_path} appeared")


def podman_cni_dir(db_path: str) -> str | None:
    """CNI's data directory when ``db_path`` is the ipam.db of this user's podman and
    that podman keeps its allocations in CNI's files (ipamguard.ipam.paths.cni_in_use)."""
    from ipamguard.ipam.paths import cni_in_use, podman_paths

    paths = podman_paths()
    if os.path.abspath(paths.db) != os.path.abspath(db_path) or not cni_in_use(paths):
        return None
    return paths.cni_data_dir


class CniWatch(_InotifyWatch):
    """A ``TriggerSource`` for changes of CNI's host-local files under ``data_dir``."""

    def __init__(self, data_dir: str) -> None:
        super().__init__()
        self.data_dir = os.path.abspath(data_dir)

    def start(self, loop: asyncio.AbstractEventLoop, push: Push) -> None:
        failure = "cannot watch CNI's files (podman's events and the resync still apply)"
        self._begin(loop, push, failure, directory=self.data_dir)

    def _watch(self) -> None:
        """The data dir with every directory below it, or (missing) its nearest ancestor."""
        assert self._manager is not None
        for wd in list(self._manager.watches):
            with contextlib.suppress(pyinotify.WatchManagerError):
                self._manager.rm_watch(wd, quiet=False)
        target = nearest_existing_dir(self.data_dir)
        whole = target == self.data_dir
        mask = (DB_EVENTS if whole else ANCESTOR_EVENTS) | SELF_EVENTS | pyinotify.IN_ONLYDIR
        try:
            wds = self._manager.add_watch(target, mask, rec=whole, auto_add=whole, quiet=False)
        except pyinotify.WatchManagerError as error:
            log.error("cannot watch CNI's files (podman's events and the resync still apply)",
                      directory=target, error=str(error))  # fmt: skip
            self.watched = None
            return
        self.watched = target if wds.get(target, -1) >= 0 else None

    def _on_event(self, event: pyinotify.Event) -> None:
        mask, path = event.mask, os.path.abspath(event.path)
        if mask & pyinotify.IN_Q_OVERFLOW:
            self._emit("inotify queue overflow")
        elif path == self.watched and mask & (pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF):
            self._watch()
            self._emit(f"{path} changed: watching again")
        elif self.watched != self.data_dir:
            if mask & pyinotify.IN_ISDIR and mask & ANCESTOR_EVENTS:
                self._watch()  # a directory on the way to the data dir appeared
                if self.watched == self.data_dir:
                    self._emit(f"{self.data_dir} appeared")
        elif mask & DB_EVENTS and event.name != LOCK_FILE:
            where = os.path.relpath(event.pathname, self.data_dir)
            self._emit(f"{event.maskname} {where}")
