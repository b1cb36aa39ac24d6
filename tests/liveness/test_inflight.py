"""The in-flight source: podman or buildah processes that no source accounts for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipamguard.errors import SourceUnavailable, SourceUncertain
from ipamguard.liveness import collect
from ipamguard.liveness.inflight import DefaultRoot, InFlightSource, subcommand, unaccounted

DEFAULT = DefaultRoot("/var/lib/containers/storage", "/run/containers/storage")
PLAIN = b"PATH=/usr/bin\0HOME=/root\0"
ALT_CONF = b"PATH=/usr/bin\0CONTAINERS_STORAGE_CONF=/etc/alt.conf\0"
CLEANUP = [  # conmon's exit command names the default root explicitly
    "/usr/bin/podman", "--root", "/var/lib/containers/storage", "--runroot",
    "/run/containers/storage", "--log-level", "warning", "--cgroup-manager", "cgroupfs",
    "--tmpdir", "/run/libpod", "--network-config-dir", "", "--network-backend", "netavark",
    "--runtime", "runc", "--storage-driver", "overlay", "--events-backend", "file",
    "container", "cleanup", "0123abcd",
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "environ", "accounted"),
    [
        (["podman", "--root", "/srv/a", "--runroot", "/run/a", "start", "web"], PLAIN, False),
        (["/usr/bin/podman", "--root=/srv/a", "run", "-d", "img"], PLAIN, False),
        (["podman", "start", "web"], PLAIN, True),  # default root: the API accounts for it
        (CLEANUP, PLAIN, True),
        (["podman", "system", "service", "--time=0"], PLAIN, True),
        # the adversarial pass: another root without --root on the command line
        (["podman", "start", "x"], ALT_CONF, False),
        (["podman", "system", "service", "--time=0", "unix:///run/alt.sock"], ALT_CONF, False),
        (["podman", "--root", "/srv/a", "system", "service"], PLAIN, False),
        (["podman", "start", "x"], None, False),  # environment unreadable: unknown storage
        # another root that only reads is harmless
        (["podman", "--root", "/srv/a", "ps"], PLAIN, True),
        (["podman", "--root", "/srv/a", "container", "inspect", "x"], PLAIN, True),
        (["podman", "ps", "-a"], ALT_CONF, True),
        (["podman", "--root", "/srv/a", "container", "start", "x"], PLAIN, False),
        (["podman", "--log-level", "debug", "--root", "/srv/a", "pod", "start", "p"], PLAIN, False),
        (["podman", "build", "-t", "x", "."], PLAIN, False),  # RUN steps allocate as buildah
        (["buildah", "run", "ctr", "true"], PLAIN, False),
        (["buildah", "--storage-driver", "vfs", "bud", "."], PLAIN, False),
        (["buildah", "images"], PLAIN, True),
        (["conmon", "-c", "abc"], PLAIN, True),
        ([], PLAIN, True),
    ],
)
def test_which_processes_are_accounted_for(
    argv: list[str], environ: bytes | None, accounted: bool
) -> None:
    assert (unaccounted(argv, environ, DEFAULT) is None) is accounted


def test_the_subcommand_skips_global_options_and_their_values() -> None:
    assert subcommand(CLEANUP) == ["container", "cleanup"]
    assert subcommand(["podman", "--url=unix:///x", "-r", "start", "a"]) == ["start", "a"]


def test_another_configured_default_root_is_the_default() -> None:
    moved = DefaultRoot("/data/containers", "/run/containers/storage")
    argv = ["podman", "--root", "/data/containers/", "start", "x"]
    assert unaccounted(argv, PLAIN, moved) is None
    assert unaccounted(argv, PLAIN, DEFAULT) is not None


def fake_proc(root: Path, processes: dict[int, tuple[list[str], bytes | None]]) -> Path:
    for pid, (argv, environ) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if environ is not None:
            (root / str(pid) / "environ").write_bytes(environ)
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc must be owned by root")
def test_source_fails_while_another_root_starts_a_container(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: (["init"], PLAIN), 42: (["podman", "start", "x"], ALT_CONF)})
    with pytest.raises(SourceUnavailable, match=r"pid 42 \(podman start x\): .*STORAGE_CONF"):
        InFlightSource(str(proc), uid=0, default=DEFAULT).observe()


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc must be owned by root")
def test_source_answers_when_nothing_is_in_flight(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: (["init"], PLAIN), 7: (["podman", "system", "service"], PLAIN)})
    assert InFlightSource(str(proc), default=DEFAULT).observe() == []


def test_other_users_processes_do_not_count(tmp_path: Path) -> None:
    """Rootless podman of another user has an ipam.db of its own."""
    proc = fake_proc(tmp_path, {42: (["podman", "--root", "/srv/a", "start", "x"], PLAIN)})
    assert InFlightSource(str(proc), uid=os.getuid() + 1, default=DEFAULT).observe() == []


def test_missing_proc_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable):
        InFlightSource(str(tmp_path / "nope")).observe()


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc must be owned by root")
def test_an_unreadable_environment_is_a_doubt_not_a_failure(tmp_path: Path) -> None:
    """Under the unit's sandbox (fewer capabilities than podman) /proc/PID/environ of
    podman cannot be read: its storage is unknown. That is a doubt the network can
    lift (ipamguard.fenced probes), not a blind spot that stops everything."""
    proc = fake_proc(tmp_path, {1: (["init"], PLAIN), 42: (["podman", "start", "x"], None)})
    with pytest.raises(SourceUncertain, match=r"pid 42 \(podman start x\): .*cannot be read"):
        InFlightSource(str(proc), default=DEFAULT).observe()
    snapshot = collect([InFlightSource(str(proc), default=DEFAULT)])
    assert snapshot.complete and snapshot.doubts and "pid 42" in snapshot.doubts[0]
