"""inotify on CNI's host-local files (the daemon's trigger under the CNI backend)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from ipamguard.daemon.db_watch import CniWatch, DbWatch, podman_cni_dir
from ipamguard.daemon.triggers import Trigger

ID = "ab" * 32


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def test_files_of_every_network_directory_even_new_ones(tmp_path: Path) -> None:
    data = tmp_path / "cni" / "networks"
    got: list[Trigger] = []

    async def main() -> None:
        watcher = CniWatch(str(data))
        watcher.start(asyncio.get_running_loop(), got.append)
        try:
            assert watcher.watched == str(tmp_path)  # not there yet: its ancestor
            data.mkdir(parents=True)
            await settle()
            assert watcher.watched == str(data)
            assert [t.reason for t in got][-1] == f"{data} appeared"
            got.clear()
            (data / "net1").mkdir()  # host-local's MkdirAll
            (data / "net1" / "lock").touch()  # its flock file: no change
            await settle()
            assert [t.reason for t in got] == ["IN_CREATE|IN_ISDIR net1"]
            got.clear()
            fd = os.open(data / "net1" / "172.19.10.11", os.O_RDWR | os.O_CREAT | os.O_EXCL)
            os.write(fd, f"{ID}\r\neth0".encode())
            os.close(fd)
            await settle()
            assert [t.reason for t in got] == [
                "IN_CREATE net1/172.19.10.11",
                "IN_MODIFY net1/172.19.10.11",
                "IN_CLOSE_WRITE net1/172.19.10.11",
            ]
            assert all(t.kind == "db-changed" for t in got)
            got.clear()
            (data / "net1" / "172.19.10.11").unlink()  # host-local's release
            await settle()
            assert [t.reason for t in got] == ["IN_DELETE net1/172.19.10.11"]
            got.clear()
            shutil.rmtree(data)  # gone: back to the ancestor, then back again
            await settle()
            assert watcher.watched == str(data.parent)
            data.mkdir()
            (data / "net2").mkdir()
            await settle()
            assert watcher.watched == str(data)
        finally:
            watcher.stop()

    asyncio.run(main())


def test_only_the_podman_of_that_ipam_db_under_cni_is_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert podman_cni_dir(str(tmp_path / "ipam.db")) is None  # not podman's ipam.db
    assert DbWatch(str(tmp_path / "ipam.db")).cni is None
    watch = DbWatch(str(tmp_path / "ipam.db"), cni_dir=str(tmp_path / "cni"))
    assert watch.cni is not None and watch.cni.data_dir == str(tmp_path / "cni")
    from ipamguard.ipam.paths import PodmanPaths

    paths = PodmanPaths(str(tmp_path / "ipam.db"), "/n", (), "unix:///s", (), "/b",
                        network_backend="cni", cni_data_dir=str(tmp_path / "cni"))  # fmt: skip
    monkeypatch.setattr("ipamguard.ipam.paths.podman_paths", lambda user=None: paths)
    assert podman_cni_dir(str(tmp_path / "ipam.db")) == str(tmp_path / "cni")
