"""The order in which the local sources look: a container of another storage root,
started while they look, is seen by one of them whatever the moment it moves on.

``podman --root /srv/a start x`` (P) allocates x's address, then starts conmon (C),
whose runtime creates x's state, and only then exits. The local sources look one after
the other after ipam.db was read (which holds the address), and the world may move on
between any two looks. The in-flight guard looks first: if P is gone by then, C and
x's runtime state already existed, and the later looks see them. In the opposite order
(runtime state, conmon, in-flight: the order before this test) a start that moves from
"P alone" to "C and state, P gone" between the looks is seen by none, and x's address
would look stale to a podman API that only knows its own root.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Collection
from pathlib import Path

import pytest

from ipamguard.context import Overrides, build_context
from ipamguard.liveness import ContainerInfo, LivenessSource, collect

X = "e" * 64
P_ARGV = ["podman", "--root", "/srv/a", "start", "x"]
C_ARGV = ["/usr/bin/conmon", "--api-version", "1", "-c", X, "-u", X, "-n", "x"]
P_PID, C_PID, INIT_PID = 4100, 4200, 4300
START = 777


def _moment(root: Path, p_runs: bool, c_runs: bool) -> Path:
    """A /proc and a runc state directory as they are at one moment of the start."""
    proc, runc = root / "proc", root / "runc"
    proc.mkdir(parents=True)
    runc.mkdir()
    running = [(1, ["init"])]
    if p_runs:
        running.append((P_PID, P_ARGV))
    if c_runs:
        running += [(C_PID, C_ARGV), (INIT_PID, ["sleep", "1000"])]
        state = {"id": X, "init_process_pid": INIT_PID, "init_process_start": START}
        (runc / X).mkdir()
        (runc / X / "state.json").write_text(json.dumps(state))
    for pid, argv in running:
        d = proc / str(pid)
        d.mkdir()
        fields = ["S", "1", str(pid), str(pid)] + ["0"] * 15 + [str(START), "0"]
        (d / "stat").write_text(f"{pid} (p) " + " ".join(fields) + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        (d / "environ").write_bytes(b"PATH=/usr/bin\0")
    return root


class _At:
    """A source that looks at the world as it is at ``moment`` (the world moves on
    between sources: a symlink repointed before each looks)."""

    def __init__(self, source: LivenessSource, world: Path, moment: Path) -> None:
        self.source, self.world, self.moment = source, world, moment
        self.name = source.name

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        self.world.unlink()
        self.world.symlink_to(self.moment)
        return self.source.observe(holders)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc must be owned by root")
def test_a_start_of_another_root_is_seen_whenever_the_world_moves_on(tmp_path: Path) -> None:
    moments = [
        _moment(tmp_path / "0", p_runs=True, c_runs=False),  # P set up the network
        _moment(tmp_path / "1", p_runs=True, c_runs=True),  # conmon and state exist
        _moment(tmp_path / "2", p_runs=False, c_runs=True),  # P exited
    ]
    world = tmp_path / "world"
    world.symlink_to(moments[0])
    ctx = build_context(False, Overrides())
    paths = dataclasses.replace(ctx.paths, runtime_dirs=(str(world / "runc"),))
    ctx = dataclasses.replace(ctx, paths=paths, proc=str(world / "proc"))
    sources = ctx.local_sources()
    assert [s.name for s in sources] == ["in-flight", "conmon", "runtime-state"]
    # every way the world can move on while the sources look, one after the other
    for when in itertools.combinations_with_replacement(range(len(moments)), len(sources)):
        looking = [_At(s, world, moments[m]) for s, m in zip(sources, when, strict=True)]
        snapshot = collect(looking, {X})
        assert not snapshot.complete or snapshot.running(X), when
