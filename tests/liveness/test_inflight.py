"""The in-flight source: a podman of another storage root or a buildah at work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.inflight import InFlightSource, in_flight


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["podman", "--root", "/srv/a", "--runroot", "/run/a", "start", "web"], True),
        (["/usr/bin/podman", "--root=/srv/a", "run", "-d", "img"], True),
        (["podman", "start", "web"], False),  # default root: the API lists it
        (["podman", "system", "service", "--time=0"], False),
        (["podman", "--root", "/srv/a", "ps"], False),
        (["buildah", "run", "ctr", "true"], True),
        (["buildah", "images"], False),
        (["conmon", "-c", "abc"], False),
        ([], False),
    ],
)
def test_which_processes_are_in_flight(argv: list[str], expected: bool) -> None:
    assert in_flight(argv) is expected


def fake_proc(root: Path, processes: dict[int, list[str]]) -> Path:
    for pid, argv in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (root / "self").mkdir()
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc must be owned by root")
def test_source_fails_while_another_root_starts_a_container(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: ["init"], 42: ["podman", "--root", "/a", "start", "x"]})
    with pytest.raises(SourceUnavailable, match=r"pid 42 \(podman --root /a start x\)"):
        InFlightSource(str(proc)).observe()


def test_source_answers_when_nothing_is_in_flight(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: ["init"], 7: ["podman", "system", "service"]})
    assert InFlightSource(str(proc)).observe() == []


def test_missing_proc_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable):
        InFlightSource(str(tmp_path / "nope")).observe()
