"""inotify on a real directory: ipam.db created later, written, replaced, deleted."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from ipamguard.daemon.db_watch import DbWatch, nearest_existing_dir
from ipamguard.daemon.triggers import Trigger


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def watch(
    db: Path, scenario: Callable[[DbWatch, list[Trigger]], Coroutine[Any, Any, None]]
) -> list[Trigger]:
    got: list[Trigger] = []

    async def main() -> None:
        watcher = DbWatch(str(db))
        threads = threading.active_count()
        watcher.start(asyncio.get_running_loop(), got.append)
        assert threading.active_count() == threads  # no thread: the loop reads inotify
        try:
            await scenario(watcher, got)
        finally:
            watcher.stop()

    asyncio.run(main())
    return got


def reasons(got: list[Trigger]) -> list[str]:
    assert all(t.kind == "db-changed" for t in got)
    return [t.reason for t in got]


def test_nearest_existing_dir(tmp_path: Path) -> None:
    assert nearest_existing_dir(str(tmp_path / "a/b/c")) == str(tmp_path)
    assert nearest_existing_dir(str(tmp_path)) == str(tmp_path)
    (tmp_path / "file").touch()
    assert nearest_existing_dir(str(tmp_path / "file/x")) == str(tmp_path)


def test_writes_replacement_and_deletion(tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        assert watcher.watched == str(tmp_path)
        db.write_bytes(b"x")  # created
        await settle()
        assert reasons(got) == ["IN_CREATE ipam.db", "IN_MODIFY ipam.db", "IN_CLOSE_WRITE ipam.db"]
        got.clear()
        (tmp_path / "other.json").write_text("{}")  # not ipam.db: nothing
        await settle()
        assert got == []
        new = tmp_path / "ipam.db.tmp"
        new.write_bytes(b"y")
        os.replace(new, db)  # replaced by rename
        await settle()
        assert reasons(got) == ["IN_MOVED_TO ipam.db"]
        got.clear()
        with open(db, "r+b") as f:  # bbolt writes in place
            os.pwrite(f.fileno(), b"z", 0)
        await settle()
        assert reasons(got) == ["IN_MODIFY ipam.db", "IN_CLOSE_WRITE ipam.db"]
        got.clear()
        db.read_bytes()  # reading is no change
        await settle()
        assert got == []
        db.unlink()
        await settle()
        assert reasons(got) == ["IN_DELETE ipam.db"]

    watch(db, scenario)


def test_the_directory_appears_after_start(tmp_path: Path) -> None:
    db = tmp_path / "run/containers/networks/ipam.db"

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        assert watcher.watched == str(tmp_path)
        (tmp_path / "run").mkdir()
        await settle()
        assert watcher.watched == str(tmp_path / "run")
        db.parent.mkdir(parents=True)  # two levels at once
        await settle()
        assert watcher.watched == str(db.parent)
        got.clear()
        db.write_bytes(b"x")
        await settle()
        assert "IN_CREATE ipam.db" in reasons(got)

    watch(db, scenario)


def test_the_directory_comes_with_the_file_already_in_it(tmp_path: Path) -> None:
    db = tmp_path / "networks/ipam.db"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "ipam.db").write_bytes(b"x")

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        os.rename(staging, db.parent)  # the directory arrives complete
        await settle()
        assert watcher.watched == str(db.parent)
        assert reasons(got) == [f"{db} appeared"]

    watch(db, scenario)


def test_the_directory_is_removed_and_created_again(tmp_path: Path) -> None:
    db = tmp_path / "networks/ipam.db"
    db.parent.mkdir()

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        assert watcher.watched == str(db.parent)
        db.write_bytes(b"x")
        await settle()
        got.clear()
        shutil.rmtree(db.parent)
        await settle()
        assert watcher.watched == str(tmp_path)
        assert reasons(got)[0] == "IN_DELETE ipam.db"
        assert reasons(got)[-1].endswith("changed: watching again")
        got.clear()
        db.parent.mkdir()
        await settle()
        assert watcher.watched == str(db.parent)
        db.write_bytes(b"y")
        await settle()
        assert "IN_CREATE ipam.db" in reasons(got)

    watch(db, scenario)


def test_stop_closes_the_inotify_descriptor(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        await settle(0.01)

    watch(tmp_path / "ipam.db", scenario)
    leaked = set(os.listdir("/proc/self/fd")) - before
    assert not [fd for fd in leaked if "inotify" in os.readlink(f"/proc/self/fd/{fd}")]


def test_no_inotify_left_is_logged_not_fatal(tmp_path: Path, monkeypatch: Any) -> None:
    def no_more_instances() -> None:
        raise OSError("Cannot initialize new instance of inotify, Errno=Too many open files")

    monkeypatch.setattr("ipamguard.daemon.db_watch.pyinotify.WatchManager", no_more_instances)

    async def scenario(watcher: DbWatch, got: list[Trigger]) -> None:
        assert watcher.watched is None

    with capture_logs() as logs:
        watch(tmp_path / "ipam.db", scenario)
    assert logs[0]["event"].startswith("cannot watch ipam.db")
    assert logs[0]["log_level"] == "error"
