"""ipamguard's bbolt engine against Go's bbolt (the oracle).

Each case starts from one file, applies the same write transactions with the
Python engine (file A) and with Go's bbolt (file B), then asserts:

    oracle.check(A) == []                     Go finds A valid
    oracle.dump(A) == oracle.dump(B) == model  the same content
    dump_python(A) == dump_python(B) == model  the engine reads both

Random cases come from Hypothesis (valid ops only, tracked by a model); large
structures (deep trees, overflow pages, rebalancing down to empty, inline
buckets that grow and shrink, other page sizes) come from explicit cases.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ops import (
    Model,
    Op,
    Txs,
    apply_txs,
    create_bucket,
    delete,
    delete_bucket,
    dump_diff,
    dump_python,
    put,
    set_sequence,
)
from oracle_tool import Oracle, OracleError, container_id, require_engine

from ipamguard.errors import InvalidDatabase

pytestmark = pytest.mark.oracle

PAGE_SIZES = [1024, 2048, 4096, 8192, 16384, 65536]


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


# --------------------------------------------------------------- comparing


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_start(
    oracle: Oracle, path: Path, page_size: int, creator: str, txs: Sequence[Sequence[Op]] = ()
) -> None:
    """A starting file: created by Go or by the engine, then ``txs`` written by Go."""
    if creator == "python":
        from ipamguard import bolt

        bolt.create(path, page_size=page_size)
        assert oracle.check(path) == [], "Go refuses the engine's new empty file"
        assert oracle.info(path)["page_size"] == page_size
    oracle.apply(path, txs, page_size=page_size)


def assert_same(oracle: Oracle, a: Path, b: Path, model: Model, what: str = "") -> None:
    """A (engine) and B (Go) hold the model's content and A is valid for Go."""
    expected = model.dump()
    dump_b = oracle.dump(b)
    assert dump_b == expected, (
        f"{what}: the test's model disagrees with Go: {dump_diff(dump_b, expected)}"
    )
    go_errors = oracle.check(b)
    if go_errors:  # Go's bbolt wrote a file its own check refuses (see go_refuses_its_own)
        event("Go's own file refused by Go's check: the engine refuses it too")
        with pytest.raises(InvalidDatabase):
            dump_python(b)
    errors = oracle.check(a)
    assert errors == [], f"{what}: Go's check of the engine's file: {errors[:10]}"
    dump_a = oracle.dump(a)
    assert dump_a == expected, (
        f"{what}: Go reads the engine's file as: {dump_diff(dump_a, expected)}"
    )
    py_a = dump_python(a)
    assert py_a == expected, (
        f"{what}: the engine reads its own file as: {dump_diff(py_a, expected)}"
    )
    if not go_errors:
        py_b = dump_python(b)
        assert py_b == expected, (
            f"{what}: the engine reads Go's file as: {dump_diff(py_b, expected)}"
        )


def go_refuses_its_own(oracle: Oracle, start: Path, a: Path, txs: Txs) -> bool:
    """Whether Go's check refuses ``start``, a file Go's bbolt wrote (Debian 12's bbolt
    1.3.6 can: "page 2: unreachable unfreed", seen after many buckets created, nested,
    deleted and created again). If so, the engine refuses to write to it, and leaves it
    byte for byte as it was: it never writes a file it could not validate."""
    if not oracle.check(start):
        return False
    before = a.read_bytes()
    with pytest.raises(InvalidDatabase):
        apply_txs(a, txs)
    assert a.read_bytes() == before
    event("Go wrote a file its own check refuses: the engine refuses to write to it")
    return True


def run_phases(
    oracle: Oracle,
    tmp: Path,
    phases: Sequence[Sequence[Sequence[Op]]],
    page_size: int = 4096,
    creator: str = "go",
    start_txs: Sequence[Sequence[Op]] = (),
) -> tuple[Path, Path, Model]:
    """Apply each phase (a list of txs): to A by the engine, to B by Go; compare after each."""
    start, a, b = tmp / "start.db", tmp / "a.db", tmp / "b.db"
    make_start(oracle, start, page_size, creator, start_txs)
    shutil.copyfile(start, a)
    shutil.copyfile(start, b)
    model = Model.from_dump(oracle.dump(start))
    for i, txs in enumerate(phases):
        apply_txs(a, txs)
        oracle.apply(b, txs)
        for tx in txs:
            for op in tx:
                model.apply(op)
        assert_same(oracle, a, b, model, f"phase {i}")
        assert oracle.info(a)["page_size"] == page_size
    return a, b, model


# --------------------------------------------------------------- generators


def rbytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def fresh_name(taken: dict[bytes, Any] | set[bytes], name: bytes) -> bytes:
    while name in taken:
        name += b"\x00"
    return name


MAX_OPS = 8000  # per scenario, to keep an example under a few seconds


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, str, int, list[list[Op]], Model]:
    """(page size, creator, number of txs Go writes first, txs, the model after all txs)."""
    page_size = draw(st.sampled_from([4096, 1024, 8192, 2048, 16384, 65536]))
    creator = draw(st.sampled_from(["go", "python"]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    model = Model()
    budget = [MAX_OPS]
    txs: list[list[Op]] = []
    for _ in range(draw(st.integers(1, 6))):
        ops: list[Op] = []
        for _ in range(draw(st.integers(1, 8))):
            for op in draw_action(draw, rng, model, page_size, budget):
                model.apply(op)
                ops.append(op)
        txs.append(ops)
    go_first = draw(st.integers(0, len(txs) - 1))
    return page_size, creator, go_first, txs, model


def draw_key(draw: st.DrawFn, rng: random.Random) -> bytes:
    kind = draw(st.sampled_from(["short", "short", "medium", "long"]))
    if kind == "short":
        return draw(st.binary(min_size=1, max_size=8))
    if kind == "medium":
        return rbytes(rng, rng.randint(9, 100))
    return rbytes(rng, rng.randint(500, 3000))


def draw_value(draw: st.DrawFn, rng: random.Random, page_size: int) -> bytes:
    kind = draw(st.sampled_from(["small", "small", "empty", "medium", "overflow"]))
    if kind == "empty":
        return b""
    if kind == "small":
        return draw(st.binary(max_size=40))
    if kind == "medium":
        return rbytes(rng, rng.randint(100, 1500))
    return rbytes(rng, rng.randint(max(5000, page_size + 1), max(20000, 2 * page_size)))


def draw_action(
    draw: st.DrawFn, rng: random.Random, model: Model, page_size: int, budget: list[int]
) -> list[Op]:
    buckets = list(model.root.walk())  # (path, ModelBucket), sorted
    kinds = ["create_bucket"]
    if buckets:
        kinds += [
            "put",
            "put",
            "bulk_put",
            "bulk_put",
            "bulk_put",
            "delete",
            "bulk_delete",
            "delete_bucket",
            "set_sequence",
        ]
    kind = draw(st.sampled_from(kinds))
    if budget[0] <= 0 and kind == "bulk_put":
        kind = "put"

    if kind == "create_bucket":
        parents: list[tuple[tuple[bytes, ...], Any]] = [((), model.root)]
        parents += [(p, b) for p, b in buckets if len(p) < 7]
        path, parent = draw(st.sampled_from(parents))
        name = draw(st.sampled_from([b"ids", b"10.89.0.0/16", b"n"])) + draw(st.binary(max_size=4))
        name = fresh_name(set(parent.buckets) | set(parent.keys), name)
        return [create_bucket(path, name)]

    path, bucket = draw(st.sampled_from(buckets))
    if kind == "put":
        if bucket.keys and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(bucket.keys)))  # overwrite
        else:
            key = fresh_name(bucket.buckets, draw_key(draw, rng))
        budget[0] -= 1
        return [put(path, key, draw_value(draw, rng, page_size))]

    if kind == "bulk_put":
        n = min(budget[0], draw(st.sampled_from([20, 100, 400, 1500, 3000])))
        budget[0] -= n
        prefix = draw(st.binary(max_size=3))
        vsize = draw(st.sampled_from([0, 8, 64, 300]))
        stride = draw(st.sampled_from([1, 7, 1000]))
        keys = [prefix + struct.pack(">I", i * stride) for i in range(n)]
        if draw(st.booleans()):
            rng.shuffle(keys)
        return [put(path, fresh_name(bucket.buckets, k), rbytes(rng, vsize)) for k in keys]

    if kind == "delete":
        if bucket.keys and draw(st.integers(0, 4)):
            return [delete(path, draw(st.sampled_from(sorted(bucket.keys))))]
        missing = fresh_name(set(bucket.keys) | set(bucket.buckets), b"missing")
        return [delete(path, missing)]

    if kind == "bulk_delete":
        keys = sorted(bucket.keys)
        fraction = draw(st.sampled_from([0.5, 0.9, 1.0]))
        chosen = rng.sample(keys, int(len(keys) * fraction))
        return [delete(path, k) for k in chosen]

    if kind == "delete_bucket":
        return [delete_bucket(path[:-1], path[-1])]

    value = draw(st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1])) + draw(st.integers(0, 3))
    return [set_sequence(path, min(value, 2**64 - 1))]


# --------------------------------------------------------------- the property


@settings(
    max_examples=int(os.environ.get("IPAMGUARD_ORACLE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(scenario=scenarios())
def test_random_transactions_match_go(
    oracle: Oracle, scenario: tuple[int, str, int, list[list[Op]], Model]
) -> None:
    page_size, creator, go_first, txs, model = scenario
    with tempfile.TemporaryDirectory(prefix="ipamguard-prop-") as tmp:
        start, a, b = Path(tmp, "start.db"), Path(tmp, "a.db"), Path(tmp, "b.db")
        make_start(oracle, start, page_size, creator, txs[:go_first])
        shutil.copyfile(start, a)
        shutil.copyfile(start, b)
        if txs[go_first:] and go_refuses_its_own(oracle, start, a, txs[go_first:]):
            return
        apply_txs(a, txs[go_first:])
        oracle.apply(b, txs[go_first:])
        assert_same(oracle, a, b, model)
        # What the example covered (pytest --hypothesis-show-statistics).
        total = oracle.stats(a)["total"]
        event(f"page size {page_size}, start by {creator}, Go wrote {go_first} tx first")
        event(f"depth {total['Depth']}")
        for field in ("LeafOverflowN", "BranchPageN", "InlineBucketN"):
            event(f"{field} > 0: {total[field] > 0}")


# --------------------------------------------------------------- explicit large cases


def keyed(
    n: int, rng: random.Random, ksize: tuple[int, int], vsize: tuple[int, int]
) -> list[tuple[bytes, bytes]]:
    items = {}
    while len(items) < n:
        key = struct.pack(">I", rng.getrandbits(32)) + rbytes(rng, rng.randint(*ksize))
        items[key] = rbytes(rng, rng.randint(*vsize))
    out = list(items.items())
    rng.shuffle(out)
    return out


def chunks(ops: list[Op], n: int) -> list[list[Op]]:
    size = max(1, -(-len(ops) // n))
    return [ops[i : i + size] for i in range(0, len(ops), size)]


def test_deep_tree_then_delete_down_to_empty(oracle: Oracle, tmp_path: Path) -> None:
    """Large keys, few per page: splits, three branch levels, then merges, root collapse."""
    rng = random.Random(1)
    big = [b"big"]
    items = keyed(3000, rng, (150, 400), (0, 100))
    fill = [put(big, k, v) for k, v in items]
    keys = [k for k, _ in items]
    rng.shuffle(keys)
    half, rest = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    phases = [
        [[create_bucket([], b"big")], *chunks(fill, 3)],
        chunks([delete(big, k) for k in half], 4),  # rebalance, merges
        chunks([delete(big, k) for k in rest], 2),  # down to empty: root collapses to a leaf
        [[put(big, b"again", b"1")]],
    ]
    start, a, b = tmp_path / "start.db", tmp_path / "a.db", tmp_path / "b.db"
    make_start(oracle, start, 4096, "go")
    shutil.copyfile(start, a)
    shutil.copyfile(start, b)
    model = Model()
    for i, txs in enumerate(phases):
        apply_txs(a, txs)
        oracle.apply(b, txs)
        for tx in txs:
            for op in tx:
                model.apply(op)
        assert_same(oracle, a, b, model, f"phase {i}")
        if i == 0:
            depth_go = oracle.stats(b)["buckets"][b"big".hex()]["Depth"]
            depth_py = oracle.stats(a)["buckets"][b"big".hex()]["Depth"]
            assert depth_go >= 3, f"the case does not build a deep tree (Go depth {depth_go})"
            assert depth_py >= 3, f"the engine built a depth-{depth_py} tree for 3000 large keys"
    assert oracle.stats(a)["buckets"][b"big".hex()]["Depth"] == 1


@pytest.mark.parametrize("creator", ["go", "python"])
def test_overflow_values(oracle: Oracle, tmp_path: Path, creator: str) -> None:
    rng = random.Random(2)
    p = [b"net", b"vals"]
    sizes = [5000, 4096 - 16, 4096 * 3, 13000, 20000, 100_000, 1]
    a, b = tmp_path / "a", tmp_path / "b"
    p0 = [[[create_bucket([], b"net"), create_bucket([b"net"], b"vals")]]]
    p0.append([[put(p, b"k%d" % i, rbytes(rng, n)) for i, n in enumerate(sizes)]])
    a.mkdir()
    _, b_db, _ = run_phases(oracle, a, p0, creator=creator)
    assert oracle.stats(b_db)["total"]["LeafOverflowN"] > 0, "the case makes no overflow pages"
    rng = random.Random(2)
    phases = [
        [[create_bucket([], b"net"), create_bucket([b"net"], b"vals")]],
        [[put(p, b"k%d" % i, rbytes(rng, n)) for i, n in enumerate(sizes)]],
        [[put(p, b"k%d" % i, rbytes(rng, 10)) for i in range(0, len(sizes), 2)]],  # shrink
        [[put(p, b"k1", rbytes(rng, 60_000)), delete(p, b"k3"), delete(p, b"k4")]],  # grow, free
        [[delete(p, b"k%d" % i) for i in range(len(sizes))]],
    ]
    b.mkdir()
    run_phases(oracle, b, phases, creator=creator)


def test_inline_bucket_grows_and_shrinks(oracle: Oracle, tmp_path: Path) -> None:
    """A bucket stays inline below pageSize/4 bytes, moves to its own page above, and back."""
    rng = random.Random(3)
    p = [b"net"]
    small = [b"10.89.0.0/24"]
    grow = [put([*p, *small], b"ip%04d" % i, rbytes(rng, 64)) for i in range(40)]
    phases = [
        [[create_bucket([], b"net"), create_bucket(p, small[0]), put([*p, *small], b"a", b"1")]],
        [grow],  # > 1024 bytes: no longer inline
        [[delete([*p, *small], b"ip%04d" % i) for i in range(40)]],  # inline again
        [[create_bucket([*p, *small], b"child")]],  # a sub-bucket: the parent cannot be inline
        [[delete_bucket([*p, *small], b"child")]],
        [[put(p, b"k", b"v"), delete_bucket(p, small[0])]],
    ]
    start, a, b = tmp_path / "start.db", tmp_path / "a.db", tmp_path / "b.db"
    make_start(oracle, start, 4096, "go")
    shutil.copyfile(start, a)
    shutil.copyfile(start, b)
    model = Model()
    inline_counts = []
    for i, txs in enumerate(phases):
        apply_txs(a, txs)
        oracle.apply(b, txs)
        for tx in txs:
            for op in tx:
                model.apply(op)
        assert_same(oracle, a, b, model, f"phase {i}")
        inline_counts.append(
            (oracle.stats(a)["total"]["InlineBucketN"], oracle.stats(b)["total"]["InlineBucketN"])
        )
    # The engine inlines exactly where Go does (same rule: no sub-bucket, size < pageSize/4).
    assert [x for x, _ in inline_counts] == [y for _, y in inline_counts], inline_counts


def test_nested_buckets_and_delete_bucket(oracle: Oracle, tmp_path: Path) -> None:
    """Six levels with data at each, a big subtree with overflow pages, then delete_bucket."""
    rng = random.Random(4)
    txs: list[list[Op]] = []
    path: list[bytes] = []
    for level in range(6):
        name = b"level%d" % level
        ops = [create_bucket(path, name)]
        path = [*path, name]
        ops += [put(path, b"k%03d" % i, rbytes(rng, 50)) for i in range(level * 60)]
        ops += [put(path, b"big", rbytes(rng, 9000)), set_sequence(path, level + 1)]
        ops += [create_bucket(path, b"inline"), put([*path, b"inline"], b"x", b"y")]
        txs.append(ops)
    phases = [
        txs,
        [[delete_bucket([b"level0", b"level1"], b"level2")]],  # frees a big subtree
        [[delete_bucket([b"level0", b"level1"], b"inline")]],  # an inline bucket
        [[delete_bucket([], b"level0")]],
    ]
    run_phases(oracle, tmp_path, phases)


def test_many_inline_buckets_split_the_parent(oracle: Oracle, tmp_path: Path) -> None:
    rng = random.Random(5)
    parent = [b"networks"]
    names = [b"podman%03d" % i for i in range(800)]
    create = [create_bucket(parent, n) for n in names]
    fill = [
        put([*parent, n], b"10.0.%d.%d" % (i % 250, j), rbytes(rng, 64))
        for i, n in enumerate(names)
        for j in range(2)
    ]
    rng.shuffle(names)
    phases = [
        [[create_bucket([], b"networks")], create, fill],
        chunks([delete_bucket(parent, n) for n in names[:600]], 3),
        [[set_sequence([*parent, n], 7) for n in names[600:650]]],
    ]
    run_phases(oracle, tmp_path, phases)


def test_sequences(oracle: Oracle, tmp_path: Path) -> None:
    rng = random.Random(6)
    phases = [
        [
            [create_bucket([], b"inl"), set_sequence([b"inl"], 2**64 - 1)],
            [create_bucket([], b"pg")]
            + [put([b"pg"], b"%05d" % i, rbytes(rng, 100)) for i in range(200)],
        ],
        [[set_sequence([b"pg"], 12345), set_sequence([b"inl"], 0)]],
        [[set_sequence([b"pg"], 2**63)]],
    ]
    run_phases(oracle, tmp_path, phases)


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_other_page_sizes(oracle: Oracle, tmp_path: Path, page_size: int) -> None:
    """Go writes a file with this page size (content included); the engine writes on it."""
    rng = random.Random(page_size)
    base = [
        [
            create_bucket([], b"net"),
            create_bucket([b"net"], b"sub"),
            create_bucket([b"net"], b"ids"),
        ],
        [put([b"net", b"sub"], struct.pack(">I", i), rbytes(rng, 64)) for i in range(1500)],
        [put([b"net", b"ids"], b"big%d" % i, rbytes(rng, 3 * page_size + 5)) for i in range(3)],
    ]
    more = [
        [put([b"net", b"sub"], struct.pack(">I", i), rbytes(rng, 10)) for i in range(0, 1500, 3)],
        [delete([b"net", b"sub"], struct.pack(">I", i)) for i in range(1, 1500, 3)],
        [put([b"net", b"ids"], b"big1", b"small"), delete([b"net", b"ids"], b"big2")],
        [create_bucket([], b"other"), put([b"other"], b"k", rbytes(rng, 2 * page_size))],
    ]
    a, _, _ = run_phases(
        oracle, tmp_path, [more[:2], more[2:]], page_size=page_size, start_txs=base
    )
    assert oracle.info(a)["page_size"] == page_size


@pytest.mark.parametrize("page_size", [4096, 16384])
def test_engine_created_file_with_page_size(oracle: Oracle, tmp_path: Path, page_size: int) -> None:
    """bolt.create(page_size=N): Go opens it, writes on it, and the engine writes again."""
    rng = random.Random(7)
    phases = [
        [
            [create_bucket([], b"x")]
            + [put([b"x"], b"%04d" % i, rbytes(rng, 100)) for i in range(500)]
        ],
    ]
    start_txs = [[create_bucket([], b"go"), put([b"go"], b"k", b"v")]]
    run_phases(oracle, tmp_path, phases, page_size=page_size, creator="python", start_txs=start_txs)


# --------------------------------------------------------------- ipam.db as netavark writes it


def test_ipam_db_from_go(oracle: Oracle, tmp_path: Path) -> None:
    """A realistic ipam.db: the engine reads it exactly, and releases like podman's deallocIPs."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    oracle.ipam_gen(b, "podman1", "10.89.0.0/16", 20000)
    oracle.ipam_gen(b, "podman2", "fd00:0:0:1::/64", 300, first_index=19900)  # shared IDs
    shutil.copyfile(b, a)
    dump = oracle.dump(b)
    assert dump_python(a) == dump
    ipam = oracle.ipam_dump(b)
    assert [n["name"] for n in ipam["networks"]] == ["podman1", "podman2"]
    assert ipam["networks"][0]["subnets"][0]["allocations"][0] == {
        "ip": "10.89.0.2",
        "container_id": container_id(0),
    }

    # Release 200 containers (some on both networks) with the engine on A, with Go on B.
    victims = [container_id(i) for i in range(0, 20000, 100)] + [container_id(19950)]
    model = Model.from_dump(dump)
    txs: list[list[Op]] = [[]]
    for net in (b"podman1", b"podman2"):
        nb = model.bucket([net])
        for cid in victims:
            raw = nb.buckets[b"ids"].keys.get(cid.encode())
            if raw is None:
                continue
            for ip in json.loads(raw):
                packed = ipaddress.ip_address(ip).packed
                subnet = next(s for s, sb in nb.buckets.items() if packed in sb.keys)
                txs[0].append(delete([net, subnet], packed))
            txs[0].append(delete([net, b"ids"], cid.encode()))
    for op in txs[0]:
        model.apply(op)
    apply_txs(a, txs)
    removed = sum(oracle.ipam_release(b, cid)[0] for cid in victims)
    assert removed == len([op for op in txs[0] if op["bucket"][-1] != b"ids".hex()])
    assert_same(oracle, a, b, model, "after release")


# --------------------------------------------------------------- errors, like Go's


def error_cases() -> list[tuple[str, list[Op], str, str]]:
    """(id, ops of one tx, the engine's error class, a piece of Go's error message)."""
    n, k = [b"net"], b"key"
    return [
        (
            "create existing bucket",
            [create_bucket([], b"net")],
            "BucketExists",
            "bucket already exists",
        ),
        (
            "create nested existing",
            [create_bucket(n, b"sub")],
            "BucketExists",
            "bucket already exists",
        ),
        (
            "create bucket over key",
            [create_bucket(n, k)],
            "IncompatibleValue",
            "incompatible value",
        ),
        (
            "delete missing bucket",
            [delete_bucket(n, b"nope")],
            "BucketNotFound",
            "bucket not found",
        ),
        ("delete missing top", [delete_bucket([], b"nope")], "BucketNotFound", "bucket not found"),
        ("delete_bucket on key", [delete_bucket(n, k)], "IncompatibleValue", "incompatible value"),
        ("put over bucket", [put(n, b"sub", b"v")], "IncompatibleValue", "incompatible value"),
        ("delete a bucket key", [delete(n, b"sub")], "IncompatibleValue", "incompatible value"),
        ("empty key", [put(n, b"", b"v")], "KeyRequired", "key required"),
        ("key too large", [put(n, b"k" * 32769, b"v")], "KeyTooLarge", "key too large"),
        ("empty bucket name", [create_bucket(n, b"")], "KeyRequired", "bucket name required"),
    ]


@pytest.mark.parametrize(
    ("ops", "error", "go_message"),
    [pytest.param(ops, err, msg, id=name) for name, ops, err, msg in error_cases()],
)
def test_errors_roll_back_like_go(
    oracle: Oracle, tmp_path: Path, ops: list[Op], error: str, go_message: str
) -> None:
    from ipamguard import bolt, errors

    path = tmp_path / "x.db"
    oracle.apply(
        path,
        [[create_bucket([], b"net"), put([b"net"], b"key", b"v"), create_bucket([b"net"], b"sub")]],
    )
    before = sha256(path)
    tx = [put([b"net"], b"fresh", b"must be rolled back"), *ops]

    go_db = tmp_path / "go.db"
    shutil.copyfile(path, go_db)
    with pytest.raises(OracleError) as go_error:
        oracle.apply(go_db, [tx])
    assert go_message in go_error.value.stderr
    assert sha256(go_db) == before

    with pytest.raises(errors.IpamguardError) as py_error:
        apply_txs(path, [tx])
    assert type(py_error.value).__name__ == error, (
        f"{type(py_error.value).__name__}: {py_error.value}"
    )
    assert str(py_error.value), "an error without a message"
    assert sha256(path) == before, "a failed write transaction changed the file"
    with bolt.DB.open(path, readonly=True) as db, db.view() as view:
        bucket = view.bucket(b"net")
        assert bucket is not None and bucket.get(b"fresh") is None


def _touch(path: Path, readonly: bool, timeout: float) -> None:
    """Open, then read (readonly) or write one key: where the engine takes bbolt's flock."""
    from ipamguard import bolt

    with bolt.DB.open(path, readonly=readonly, timeout=timeout) as db:
        if readonly:
            with db.view() as tx:
                assert tx.bucket(b"net") is not None
        else:
            with db.update() as tx:
                tx.bucket(b"net").put(b"k", b"v")


def test_lock_is_bbolts_flock(oracle: Oracle, tmp_path: Path) -> None:
    """The engine honours the flock of Go's bbolt (gives up with LockTimeout) and shares reads."""
    from ipamguard import errors

    path = tmp_path / "x.db"
    oracle.apply(path, [[create_bucket([], b"net")]])
    before = sha256(path)
    with oracle.hold(path):  # a Go writer: exclusive
        for readonly in (True, False):
            t0 = time.monotonic()
            with pytest.raises(errors.LockTimeout):
                _touch(path, readonly, 0.3)
            assert 0.25 <= time.monotonic() - t0 < 5
    with oracle.hold(path, readonly=True):  # a Go reader: shared
        _touch(path, True, 0.3)
        with pytest.raises(errors.LockTimeout):
            _touch(path, False, 0.3)
    with open(path, "rb") as holder:  # the same with a plain flock
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(errors.LockTimeout):
            _touch(path, True, 0.2)
    assert sha256(path) == before
    _touch(path, False, 0.3)
    assert oracle.dump(path)["buckets"][b"net".hex()]["keys"] == {b"k".hex(): b"v".hex()}


def test_cli_dump_json_matches_go(oracle: Oracle, tmp_path: Path) -> None:
    """``ipamguard dump --json`` lists what Go's walk of the same file lists (IPv4 and IPv6)."""
    path = tmp_path / "ipam.db"
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", 700)
    oracle.ipam_gen(path, "podman2", "fd00:0:0:1::/64", 300, first_index=650)
    oracle.ipam_gen(path, "podman2", "10.90.0.0/24", 20, first_index=5000)  # a second subnet
    proc = subprocess.run(
        [sys.executable, "-m", "ipamguard", "dump", "--json", "--db", str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    assert ours["networks"] == oracle.ipam_dump(path)["networks"]


def test_a_file_gos_bbolt_leaves_broken(oracle: Oracle, tmp_path: Path) -> None:
    """Found by the property above: Debian 12's Go bbolt (1.3.6) deletes a bucket that
    holds a bucket created in the same tx and another with pages of its own, and leaves
    a page neither reachable nor free (its own check: "page 2: unreachable unfreed").
    The engine refuses that file, writing nothing; the same txs written by the engine
    give a file that Go's check accepts, with the content Go's bbolt reads from its own."""
    ids, nested = b"ids", b"n"
    txs = [
        [create_bucket([], ids)],
        [create_bucket([ids], nested)]
        + [put([ids, nested], struct.pack(">I", i), b"") for i in range(0x31, 0x64)],
        [create_bucket([ids], ids), delete_bucket([], ids)],
    ]
    go, engine = tmp_path / "go.db", tmp_path / "engine.db"
    oracle.apply(go, txs, page_size=4096)
    assert oracle.check(go) == ["page 2: unreachable unfreed"]
    before = go.read_bytes()
    with pytest.raises(InvalidDatabase, match="page 2: neither reachable nor free"):
        apply_txs(go, [[create_bucket([], b"after")]])
    assert go.read_bytes() == before
    apply_txs(engine, txs, page_size=4096)
    assert oracle.check(engine) == []
    assert oracle.dump(engine) == oracle.dump(go)
