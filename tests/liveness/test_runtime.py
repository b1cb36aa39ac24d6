"""Runtime state dirs (runc, crun, youki) and conmon processes, on fake /proc trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness import ConmonSource, ContainerInfo, RuntimeStateSource
from ipamguard.liveness.runtime import conmon_container, process_alive

A = "a" * 64
B = "b" * 64
C = "c" * 64
BUILDAH = "buildah-buildah2766448743"  # buildah run / podman build: the ID in ipam.db too


class FakeProc:
    """A /proc tree: stat (with start time, field 22) and cmdline per pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def add(
        self, pid: int, start: int = 1000, state: str = "S", argv: list[str] | None = None
    ) -> None:
        d = self.root / str(pid)
        d.mkdir()
        # comm may hold spaces and parentheses: parsing starts after the last ')'
        fields = [state, "1", str(pid), str(pid)] + ["0"] * 15 + [str(start), "0"]
        (d / "stat").write_text(f"{pid} (odd) comm) " + " ".join(fields) + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv or []))

    def __str__(self) -> str:
        return str(self.root)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def runc_state(root: Path, cid: str, pid: int, start: int) -> None:
    (root / cid).mkdir(parents=True)
    state = {"id": cid, "init_process_pid": pid, "init_process_start": start, "config": {}}
    (root / cid / "state.json").write_text(json.dumps(state))


def crun_status(root: Path, cid: str, pid: int, start: int) -> None:
    (root / cid).mkdir(parents=True)
    status = {"pid": pid, "process-start-time": start, "cgroup-path": "/x", "rootfs": "/r"}
    (root / cid / "status").write_text(json.dumps(status))


# ------------------------------------------------------------------ process_alive


def test_process_alive_checks_existence_zombies_and_start_time(proc: FakeProc) -> None:
    proc.add(10, start=555)
    proc.add(11, state="Z")
    assert process_alive(str(proc), 10)
    assert process_alive(str(proc), 10, 555)
    assert not process_alive(str(proc), 10, 556)  # the pid was reused
    assert not process_alive(str(proc), 11)
    assert not process_alive(str(proc), 12)


# ------------------------------------------------------------------ runtime state


def test_runc_running_stopped_and_reused_pid(tmp_path: Path, proc: FakeProc) -> None:
    runc = tmp_path / "runc"
    proc.add(100, start=7000)
    proc.add(200, start=1)
    runc_state(runc, A, 100, 7000)  # alive
    runc_state(runc, B, 200, 9999)  # pid 200 is someone else now
    runc_state(runc, C, 300, 7000)  # gone
    runc_state(runc, BUILDAH, 100, 7000)
    source = RuntimeStateSource((str(runc),), str(proc))
    assert sorted(source.observe(), key=lambda c: c.id) == [
        ContainerInfo(A, "running", "runc"),
        ContainerInfo(B, "stopped", "runc"),
        ContainerInfo(BUILDAH, "running", "runc"),
        ContainerInfo(C, "stopped", "runc"),
    ]


def test_crun_and_youki_layouts(tmp_path: Path, proc: FakeProc) -> None:
    proc.add(42, start=4242)
    crun = tmp_path / "crun"
    crun_status(crun, A, 42, 4242)
    crun_status(crun, B, 43, 4242)
    (crun / ".empty-directory").mkdir()  # crun's own, not a container
    youki = tmp_path / "youki"
    (youki / C).mkdir(parents=True)
    (youki / C / "state.json").write_text(json.dumps({"id": C, "status": "running", "pid": 42}))
    source = RuntimeStateSource((str(crun), str(youki)), str(proc))
    assert sorted(source.observe(), key=lambda c: c.id) == [
        ContainerInfo(A, "running", "crun"),
        ContainerInfo(B, "stopped", "crun"),
        ContainerInfo(C, "running", "youki"),
    ]


def test_entries_without_a_readable_pid_are_known_but_unknown(
    tmp_path: Path, proc: FakeProc
) -> None:
    runc = tmp_path / "runc"
    (runc / A).mkdir(parents=True)  # state file not written yet
    (runc / B).mkdir()
    (runc / B / "state.json").write_text('{"init_process_pid": ')  # torn
    (runc / C).mkdir()
    (runc / C / "state.json").write_text('{"init_process_pid": 0}')
    (runc / "stray-file").write_text("")  # not a container
    (runc / "link").symlink_to(runc / A)
    source = RuntimeStateSource((str(runc),), str(proc))
    assert sorted(source.observe(), key=lambda c: c.id) == [
        ContainerInfo(A, "unknown", "runc"),
        ContainerInfo(B, "unknown", "runc"),
        ContainerInfo(C, "unknown", "runc"),
    ]


def test_missing_state_dirs_mean_no_containers(tmp_path: Path, proc: FakeProc) -> None:
    source = RuntimeStateSource((str(tmp_path / "runc"), str(tmp_path / "crun")), str(proc))
    assert source.observe() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 directory anyway")
def test_an_unreadable_state_dir_is_a_failure(tmp_path: Path, proc: FakeProc) -> None:
    runc = tmp_path / "runc"
    runc.mkdir()
    runc.chmod(0)
    try:
        with pytest.raises(SourceUnavailable, match=r"^runc state: .*/runc: permission denied$"):
            RuntimeStateSource((str(runc),), str(proc)).observe()
    finally:
        runc.chmod(0o700)


def test_a_state_dir_that_cannot_be_listed_is_a_failure(
    tmp_path: Path, proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as above for root, who reads mode 000 directories: os.listdir refuses."""
    runc = tmp_path / "runc"
    runc.mkdir()
    real_listdir = os.listdir

    def listdir(path: str | os.PathLike[str]) -> list[str]:
        if Path(path) == runc:
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    source = RuntimeStateSource((str(tmp_path / "crun"), str(runc)), str(proc))
    with pytest.raises(SourceUnavailable) as info:
        source.observe()
    assert str(info.value) == f"runc state: {runc}: permission denied"


def test_a_state_dir_that_is_a_file_is_a_failure(tmp_path: Path, proc: FakeProc) -> None:
    runc = tmp_path / "runc"
    runc.write_text("")
    with pytest.raises(SourceUnavailable, match=r"^runc state: .*/runc: not a directory$"):
        RuntimeStateSource((str(runc),), str(proc)).observe()


def test_an_unreadable_process_is_a_failure_not_a_stopped_container(
    tmp_path: Path, proc: FakeProc
) -> None:
    """E.g. /proc mounted with hidepid: blind is not the same as "not running"."""
    runc = tmp_path / "runc"
    runc_state(runc, A, 100, 7000)
    (proc.root / "100" / "stat").mkdir(parents=True)  # reading it fails (EISDIR)
    with pytest.raises(SourceUnavailable) as info:
        RuntimeStateSource((str(runc),), str(proc)).observe()
    assert str(info.value) == f"runc state: {proc.root}/100/stat: is a directory"


def test_an_unreadable_state_file_is_a_failure(tmp_path: Path, proc: FakeProc) -> None:
    runc = tmp_path / "runc"
    (runc / A / "state.json").mkdir(parents=True)
    with pytest.raises(SourceUnavailable, match=r"^runc state: .*/state.json: is a directory$"):
        RuntimeStateSource((str(runc),), str(proc)).observe()


# ------------------------------------------------------------------ conmon


def conmon_argv(cid: str, name: str, *extra: str) -> list[str]:
    """podman 4.3's conmon command line (shortened)."""
    return [
        "/usr/bin/conmon", "--api-version", "1", "-c", cid, "-u", cid, "-r", "/usr/bin/runc",
        "-b", f"/var/lib/containers/storage/overlay-containers/{cid}/userdata",
        "-n", name, "--exit-dir", "/run/libpod/exits", *extra,
        "--exit-command", "/usr/bin/podman", "--exit-command-arg", "--root",
        "--exit-command-arg", "/var/lib/containers/storage",
        "--exit-command-arg", "container", "--exit-command-arg", "cleanup",
        "--exit-command-arg", cid,
    ]  # fmt: skip


def test_conmon_processes_name_their_containers(proc: FakeProc) -> None:
    proc.add(10, argv=conmon_argv(A, "web"))
    proc.add(11, argv=["/usr/libexec/podman/conmon", "--cid", B, "--name=db"])
    proc.add(12, argv=["conmon", f"--cid={C}"])
    proc.add(13, argv=["sleep", "1000", "-c", "f" * 64])  # not conmon
    proc.add(14, argv=["/usr/bin/conmon-wrapper", "-c", "e" * 64])  # not conmon
    proc.add(15, argv=[])  # kernel thread
    proc.add(16, argv=["/usr/bin/conmon", "--version"])  # no container
    (proc.root / "self").mkdir()
    (proc.root / "17").mkdir()  # vanished between listdir and read
    assert ConmonSource(str(proc)).observe() == [
        ContainerInfo(A, "running", "conmon", "web"),
        ContainerInfo(B, "running", "conmon", "db"),
        ContainerInfo(C, "running", "conmon"),
    ]


def test_conmon_exec_sessions_count_for_their_container() -> None:
    argv = ["/usr/bin/conmon", "--api-version", "1", "-c", A, "-u", "x" * 64, "-e"]
    assert conmon_container(argv) == (A, "")


def test_an_unreadable_cmdline_is_a_failure(proc: FakeProc) -> None:
    proc.add(10, argv=conmon_argv(A, "web"))
    (proc.root / "11" / "cmdline").mkdir(parents=True)
    with pytest.raises(SourceUnavailable) as info:
        ConmonSource(str(proc)).observe()
    assert str(info.value) == f"processes in {proc}: {proc}/11/cmdline: is a directory"


def test_conmon_without_proc_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match=r"^processes in .*/nope: no such file"):
        ConmonSource(str(tmp_path / "nope")).observe()
