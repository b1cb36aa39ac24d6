"""A branch key that is not its child's first key, yet in order: refused before any write.

bbolt keeps one invariant that its own ``tx.Check`` does not check: the key of a branch
element is the first key of its child page (node.spill puts ``inodes[0].key`` of the child
into the parent). A write relies on it: the parent's element of a changed child is found by
the child's first key. Change such a key to a value still between its neighbours (every key
range still holds, Go's check passes) and the next write under that branch, by Go's bbolt as
by a naive engine, adds a second element for the child and leaves the old page reachable and
freed (``page N: reachable freed``), for podman's next write to hand out again.

The files here are ipam.db as netavark writes it (Go's bbolt, 5,000 allocations: the subnet
bucket is three levels deep), damaged once below a branch whose child is a leaf, once where
the child is itself a branch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import rawbolt as rb
from oracle_tool import Oracle, container_id, require_engine

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
SUBNET = (b"podman1", b"10.89.0.0/16")
COUNT = 5000


@dataclass
class Damage:
    data: bytes
    parent: int  # the branch page whose key was changed
    child: int  # the page that element points to
    first: bytes  # the child's first key (the key the element had)
    key: bytes  # the key it has now
    victim: str  # a container whose IP key sits below the damaged element


@pytest.fixture(scope="module")
def ipam_db(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    require_engine()
    path = tmp_path_factory.mktemp("branch-keys") / "ipam.db"
    oracle.ipam_gen(path, SUBNET[0].decode(), SUBNET[1].decode(), COUNT, ids_per_tx=250)
    assert oracle.check(path) == []
    return path.read_bytes()


def damage(data: bytes, child_kind: str) -> Damage:
    """Element i >= 1 of a branch of the subnet bucket gets the key ``L + 00``, where L is
    the last key below element i-1: strictly between L and the child's first key."""
    raw = rb.RawFile(data)
    for page in sorted(raw.pages.values(), key=lambda p: p.id):
        if page.kind != "branch" or page.bucket != SUBNET:
            continue
        for i in range(1, len(page.elems)):
            elem = page.elems[i]
            if raw.pages[elem.child].kind != child_kind:
                continue
            key = rb.subtree_last_key(raw, page.elems[i - 1].child) + b"\x00"
            assert page.elems[i - 1].key < key < elem.key
            edited = bytearray(data)
            rb.set_branch_key(edited, raw, page.id, i, key)
            leaf = raw.pages[elem.child]
            while leaf.kind == "branch":
                leaf = raw.pages[leaf.elems[0].child]
            victim = leaf.elems[1].value.decode()  # not the first key: a plain delete
            return Damage(bytes(edited), page.id, elem.child, elem.key, key, victim)
    raise AssertionError(f"the file has no branch with a {child_kind} child at index >= 1")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def message_pattern(d: Damage) -> str:
    return (
        rf"page {d.child} \(child of page {d.parent}\): first key {d.first.hex()} is not "
        rf"the key {d.key.hex()} that its parent has for it"
    )


@pytest.fixture(params=["leaf", "branch"])
def damaged(request: pytest.FixtureRequest, ipam_db: bytes, tmp_path: Path) -> tuple[Damage, Path]:
    d = damage(ipam_db, request.param)
    path = tmp_path / "ipam.db"
    path.write_bytes(d.data)
    return d, path


def test_go_misses_it_and_breaks_the_file_on_the_next_write(
    oracle: Oracle, damaged: tuple[Damage, Path], tmp_path: Path
) -> None:
    """Why the engine must refuse: every range holds, and Go's bbolt itself then corrupts it."""
    d, path = damaged
    assert d.victim in {container_id(i) for i in range(COUNT)}
    assert oracle.check(path) == [], "the damage must be the kind that Go's check passes"
    copy = tmp_path / "go.db"
    shutil.copyfile(path, copy)
    assert oracle.ipam_release(copy, d.victim)[0] == 1
    errors = oracle.check(copy)
    assert any(f"page {d.child}:" in e for e in errors), errors[:5]


def test_engine_refuses_to_read_or_write(damaged: tuple[Damage, Path]) -> None:
    from ipamguard import bolt
    from ipamguard.errors import InvalidDatabase

    d, path = damaged
    digest = sha256(path)
    with pytest.raises(InvalidDatabase) as read, bolt.DB.open(path) as db, db.view():
        pass
    assert re.search(message_pattern(d), str(read.value)), str(read.value)
    assert "\n" not in str(read.value)
    with (
        pytest.raises(InvalidDatabase) as write,
        bolt.DB.open(path, readonly=False) as db,
        db.update() as tx,
    ):  # what a release does: the IP key and the ids entry
        network = tx.bucket(SUBNET[0])
        assert network is not None
        subnet, ids = network.bucket(SUBNET[1]), network.bucket(b"ids")
        assert subnet is not None and ids is not None
        ip = next(k for k, v in subnet.items() if v == d.victim.encode())
        subnet.delete(ip)
        ids.delete(d.victim.encode())
    assert re.search(message_pattern(d), str(write.value)), str(write.value)
    assert sha256(path) == digest, "a refused write changed the file"


@pytest.mark.parametrize(
    "command", [["dump"], ["release", "--force", "--yes", "--container", "VICTIM"]]
)
def test_cli_one_line_exit_2(damaged: tuple[Damage, Path], command: list[str]) -> None:
    d, path = damaged
    digest = sha256(path)
    argv = [a.replace("VICTIM", d.victim) for a in command] + ["--db", str(path)]
    if command[0] == "release":  # never the host's backup directory
        argv += ["--backup-dir", tempfile.mkdtemp(prefix="ipamguard-test-")]
    proc = subprocess.run(
        [sys.executable, "-m", "ipamguard", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipamguard: error:"), lines
    assert re.search(message_pattern(d), lines[0]), lines[0]
    assert proc.stdout == ""
    assert sha256(path) == digest
