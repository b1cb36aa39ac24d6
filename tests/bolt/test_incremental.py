"""Validation that follows the change, at the level of subtrees, and snapshots let go.

A podman commit rewrites one path from the root to a leaf (and the ids bucket's path):
every other subtree of the file is byte for byte what was validated before, and is
taken whole (its pages claimed again, nothing else looked at). A page that changed
anywhere below, even one whose parents did not change (damage, not bbolt), makes its
subtree be walked again. The file is ipam.db as netavark writes it (Go's bbolt).
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import rawbolt as rb
from oracle_tool import Oracle, require_engine
from test_damaged import dump_tx

from ipamguard.bolt import DB
from ipamguard.bolt import db as db_module
from ipamguard.bolt.check import _Checker, load_snapshot, select_meta
from ipamguard.bolt.reuse import Reuse, changed_pages, page_digests
from ipamguard.bolt.tx import Tx
from ipamguard.errors import InvalidDatabase

pytestmark = pytest.mark.oracle

SUBNET = (b"podman1", b"10.89.0.0/16")


@pytest.fixture(scope="module")
def versions(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """ipam.db with 5,000 allocations, and the same file after one more ``podman run``."""
    require_engine()
    path = tmp_path_factory.mktemp("incremental") / "ipam.db"
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", 5000, ids_per_tx=500)
    before = path.read_bytes()
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", 1, first_index=9000)
    return before, path.read_bytes()


def incremental(data: bytes, previous_data: bytes) -> _Checker:
    previous = load_snapshot(previous_data)
    size = previous.meta.page_size
    changed = changed_pages(page_digests(previous_data, size), page_digests(data, size))
    checker = _Checker(data, select_meta(data), Reuse.of(previous, changed))
    checker.run()
    return checker


def test_unchanged_subtrees_are_taken_whole(versions: tuple[bytes, bytes]) -> None:
    before, after = versions
    checker = incremental(after, before)
    full = _Checker(after, select_meta(after))
    full.run()
    looked_at = len(full.info) - checker.taken
    assert checker.taken > 0.9 * len(full.info), (checker.taken, len(full.info))
    assert looked_at < 20, looked_at  # the changed paths and their siblings' roots
    assert checker.info == full.info and checker.leaves.keys() == full.leaves.keys()
    assert checker.owner == full.owner and checker.heads == full.heads
    assert list(checker.walk.pgids) == list(full.walk.pgids)
    assert list(checker.walk.size) == list(full.walk.size)
    assert checker.walk.at == full.walk.at


def test_a_file_unchanged_is_taken_whole(versions: tuple[bytes, bytes]) -> None:
    _, after = versions
    checker = incremental(after, after)
    assert checker.taken == len(checker.info)


def _swap_two_keys_of_a_far_leaf(data: bytes, changed: set[int]) -> tuple[bytes, int]:
    """A leaf of the subnet bucket that no commit touched, with its first two keys'
    bytes swapped (same lengths): out of order, every other byte of the file as it was."""
    raw = rb.RawFile(data)
    for page in raw.by_kind("leaf"):
        if page.bucket != SUBNET or page.id in changed or len(page.elems) < 3:
            continue
        a, b = page.elems[1], page.elems[2]
        if len(a.key) != len(b.key):
            continue
        damaged = bytearray(data)
        at_a = a.offset + rb.LEAF_ELEM.unpack_from(data, a.offset)[1]
        at_b = b.offset + rb.LEAF_ELEM.unpack_from(data, b.offset)[1]
        damaged[at_a : at_a + len(a.key)] = b.key
        damaged[at_b : at_b + len(b.key)] = a.key
        return bytes(damaged), page.id
    raise AssertionError("no leaf to damage")


@pytest.mark.parametrize("base", ["before the change", "after the change"])
def test_damage_below_unchanged_parents_is_refused(
    versions: tuple[bytes, bytes], base: str
) -> None:
    """The damaged leaf's parents are byte for byte as validated: its subtree is walked
    again all the same, and the verdict and words are the full validation's."""
    before, after = versions
    size = select_meta(after).page_size
    changed = changed_pages(page_digests(before, size), page_digests(after, size))
    damaged, pgid = _swap_two_keys_of_a_far_leaf(after, changed)
    with pytest.raises(InvalidDatabase) as full:
        load_snapshot(damaged)
    assert f"page {pgid}: keys out of order" in str(full.value)
    previous = load_snapshot(before if base == "before the change" else after)
    with pytest.raises(InvalidDatabase) as reused:
        load_snapshot(damaged, previous)
    assert str(reused.value) == str(full.value)
    with pytest.raises(InvalidDatabase):  # and without the fallback to a full validation
        checker = _Checker(
            damaged, select_meta(damaged), Reuse.between(previous, page_digests(damaged, size))
        )
        checker.run()


@pytest.mark.parametrize("writable", [False, True])
def test_a_closed_tx_lets_its_snapshot_go_without_the_cycle_collector(
    versions: tuple[bytes, bytes], writable: bool
) -> None:
    """A tx and its buckets (and a write tx's nodes) hold no reference cycle through the
    tx: the daemon kept one old copy of ipam.db per cycle, freed only when the cycle
    collector happened to run (65,000 allocations: 140 -> 240 MB)."""
    _, after = versions
    gc.collect()
    gc.disable()
    try:
        tx = Tx(load_snapshot(after), writable=writable)
        subnet = tx.bucket(SUBNET[0])
        assert subnet is not None
        child = subnet.bucket(SUBNET[1])
        assert child is not None and sum(1 for _ in child.items()) > 5000
        if writable:
            child.delete(next(k for k, _ in child.items()))
        gone = weakref.ref(tx.snapshot)
        tx.rollback()
        del tx, subnet, child
        assert gone() is None
    finally:
        gc.enable()


def test_incremental_snapshot_reads_like_a_full_one(versions: tuple[bytes, bytes]) -> None:
    before, after = versions
    snapshot = load_snapshot(after, load_snapshot(before))
    full = load_snapshot(after)
    assert snapshot.free == full.free
    reads = []
    for snap in (snapshot, full):
        tx = Tx(snap, writable=False)
        bucket = tx.bucket(SUBNET[0])
        assert bucket is not None
        reads.append([(k, v) for k, v in bucket.bucket(SUBNET[1]).items()])  # type: ignore[union-attr]
    assert reads[0] == reads[1] and len(reads[0]) > 5000


def test_between_reads_only_digests_are_kept(versions: tuple[bytes, bytes], tmp_path: Path) -> None:
    """The file's bytes live as long as the read's tx; what the next read of the file
    takes over keeps each page's digest instead (16 bytes a page), and still finds the
    page that changed."""
    before, after = versions
    path = tmp_path / "ipam.db"
    path.write_bytes(before)
    gc.collect()
    gc.disable()
    try:
        with DB.open(path) as handle, handle.view() as tx:
            gone = weakref.ref(tx.snapshot)
        del tx
        assert gone() is None  # the snapshot, and the 2.6 MB it holds, let go
    finally:
        gc.enable()
    info = path.stat()
    kept = db_module._VALIDATED[(info.st_dev, info.st_ino)]
    assert not hasattr(kept, "data")
    assert len(kept.page_digests()) == 16 * (len(before) // kept.meta.page_size)
    path.write_bytes(after)  # in place, as bbolt writes: the same inode
    with DB.open(path) as handle, handle.view() as tx:
        assert bytes(tx.snapshot.data) == after
        assert dump_tx(tx) == dump_tx(Tx(load_snapshot(after), writable=False))
    size = kept.meta.page_size
    changed = changed_pages(kept.page_digests(), page_digests(after, size))
    common, pages = min(len(before), len(after)) // size, max(len(before), len(after)) // size
    differ = {
        p
        for p in range(common)
        if before[p * size : (p + 1) * size] != after[p * size : (p + 1) * size]
    }
    assert differ and changed == differ | set(range(common, pages + 1))
