"""Damaged files: the engine refuses them cleanly and never writes on them.

A valid file written by Go's bbolt (several buckets, branch pages, overflow
pages, inline buckets, free pages) is broken in one precise way per case. Then:

- reading either works with the right content (damage in an unused area, or in
  one meta page: the other is used) or raises InvalidDatabase, with a message
  that names the problem;
- a write attempt either raises InvalidDatabase with the file byte-for-byte
  unchanged, or (only where the damage is harmless) commits a file that Go's
  check finds valid, with the right content;
- no other exception type ever escapes (IndexError, struct.error, KeyError...);
- the CLI prints one ``ipamguard: error:`` line and exits 2.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rawbolt as rb
from ops import Model, create_bucket, delete, dump_python, put
from oracle_tool import Oracle, OracleError, require_engine

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
REFUSE, OK, EITHER = "refuse", "ok", "either"


@dataclass
class Base:
    data: bytes
    raw: rb.RawFile
    cur: dict[str, Any]  # content at the newest meta
    prev: dict[str, Any]  # content at the other meta (one transaction older)


@dataclass
class Case:
    data: bytes
    read: str  # REFUSE, OK (content in `expect`) or EITHER (refuse, or Go's view of the file)
    expect: list[dict[str, Any]] = field(default_factory=list)  # acceptable contents
    message: str = ""  # regex that a refusal's message must match (case-insensitive)
    write_may_succeed: bool = False  # harmless damage: the engine may write (validly)
    write_refused: str = ""  # regex: the file reads, yet a write must be refused with this


# --------------------------------------------------------------- the valid base file


@pytest.fixture(scope="module")
def base(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> Base:
    require_engine()
    rng = random.Random(42)
    path = tmp_path_factory.mktemp("damaged") / "base.db"
    net, sub, ids = [b"podman1"], [b"podman1", b"10.89.0.0/16"], [b"podman1", b"ids"]
    cids = [rng.randbytes(32).hex().encode() for _ in range(600)]
    ips = [bytes([10, 89, i // 250, 2 + i % 250]) for i in range(600)]
    txs = [
        [create_bucket([], b"podman1"), create_bucket(net, sub[1]), create_bucket(net, ids[1])]
        + [put(sub, ip, cid) for ip, cid in zip(ips, cids, strict=True)]
        + [put(ids, cid, b'["10.89.0.2"]') for cid in cids],
        [
            create_bucket([], b"small"),
            put([b"small"], b"a", b"1"),
            put([b"small"], b"b", b""),
            create_bucket([], b"big"),
            put([b"big"], b"blob", rng.randbytes(20000)),
            create_bucket([b"big"], b"inline"),
            put([b"big", b"inline"], b"x", b"y"),
        ],
        [delete(sub, ip) for ip in ips[::3]],  # frees pages
    ]
    oracle.apply(path, txs)
    prev = oracle.dump(path)
    oracle.apply(path, [[put(sub, b"lastIP", ips[-1])]])
    cur = oracle.dump(path)
    assert oracle.check(path) == []
    data = path.read_bytes()
    raw = rb.RawFile(data)
    assert raw.by_kind("branch"), "the base file needs a branch page"
    assert raw.overflow_pages(), "the base file needs overflow pages"
    assert raw.inline_buckets, "the base file needs inline buckets"
    assert raw.free, "the base file needs free pages"
    assert oracle.info(path)["free_pages"] == len(raw.free)
    return Base(data, raw, cur, prev)


# --------------------------------------------------------------- the corpus

Builder = Callable[[Base], Case]
CASES: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        CASES[name] = fn
        return fn

    return register


def edit(b: Base) -> bytearray:
    return bytearray(b.data)


def first_branch(b: Base) -> rb.Page:
    return min(b.raw.by_kind("branch"), key=lambda p: p.id)


def leaf_with_elems(b: Base) -> rb.Page:
    return min((p for p in b.raw.by_kind("leaf") if p.count >= 2), key=lambda p: p.id)


# meta pages ---------------------------------------------------------------------------


@case("meta-bad-magic-both")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        rb.set_meta_field(d, i, b.raw.page_size, 0, 0xDEADBEEF, fix=False)
    return Case(bytes(d), REFUSE, message=r"magic|not a bbolt")


@case("meta-bad-version-both")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        rb.set_meta_field(d, i, b.raw.page_size, 4, 1)
    return Case(bytes(d), REFUSE, message=r"version")


@case("meta-bad-checksum-both")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        d[i * b.raw.page_size + rb.CHECKSUM_OFFSET] ^= 0x5A
    return Case(bytes(d), REFUSE, message=r"checksum")


@case("meta-page-size-8192-both")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        rb.set_meta_field(d, i, b.raw.page_size, 8, 8192)
    return Case(bytes(d), REFUSE, message=r"page.?size|size|bytes|trunc")


@case("meta-page-size-3000-both")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        rb.set_meta_field(d, i, b.raw.page_size, 8, 3000)
    return Case(bytes(d), REFUSE, message=r"page.?size|size|bytes|trunc")


@case("meta-current-bad-magic")
def _(b: Base) -> Case:
    d = edit(b)
    rb.set_meta_field(d, b.raw.meta.index, b.raw.page_size, 0, 0, fix=False)
    return Case(bytes(d), OK, [b.prev], write_may_succeed=True)


@case("meta-current-bad-checksum")
def _(b: Base) -> Case:
    d = edit(b)
    d[b.raw.meta.index * b.raw.page_size + rb.META_OFFSET + 48] ^= 0x01  # txid, unsummed
    return Case(bytes(d), OK, [b.prev], write_may_succeed=True)


@case("meta-older-bad-checksum")
def _(b: Base) -> Case:
    d = edit(b)
    d[b.raw.other.index * b.raw.page_size + rb.CHECKSUM_OFFSET + 3] ^= 0xFF
    return Case(bytes(d), OK, [b.cur], write_may_succeed=True)


@case("meta-current-zeroed-page")
def _(b: Base) -> Case:
    d = edit(b)
    off = b.raw.meta.index * b.raw.page_size
    d[off : off + b.raw.page_size] = bytes(b.raw.page_size)
    return Case(bytes(d), OK, [b.prev], write_may_succeed=True)


def _current_meta_field(b: Base, field_offset: int, value: int) -> Case:
    """A checksummed but wrong current meta: refuse, or fall back to the other meta."""
    d = edit(b)
    rb.set_meta_field(d, b.raw.meta.index, b.raw.page_size, field_offset, value)
    return Case(bytes(d), EITHER, [b.prev], message=r"page|root|freelist|high|water|meta")


@case("meta-root-beyond-hwm")
def _(b: Base) -> Case:
    return _current_meta_field(b, 16, b.raw.meta.pgid + 10)


@case("meta-root-is-meta-page")
def _(b: Base) -> Case:
    return _current_meta_field(b, 16, 1)


@case("meta-freelist-beyond-hwm")
def _(b: Base) -> Case:
    return _current_meta_field(b, 32, b.raw.meta.pgid + 1)


@case("meta-hwm-beyond-file")
def _(b: Base) -> Case:
    return _current_meta_field(b, 40, len(b.data) // b.raw.page_size + 100)


@case("meta-hwm-below-pages")
def _(b: Base) -> Case:
    return _current_meta_field(b, 40, 3)


# Found by bench/fuzz_bolt.py: a huge high-water mark (checksum valid) was a MemoryError.
@case("meta-hwm-huge")
def _(b: Base) -> Case:
    d = edit(b)
    rb.set_meta_field(d, b.raw.meta.index, b.raw.page_size, 40, 2**63 + 5)
    return Case(bytes(d), REFUSE, message=r"truncated.*needs \d+ pages")


# Found by bench/fuzz_bolt.py: a meta whose checksum is valid but whose page size is not
# was skipped like a torn write, so the older meta's state was read (and the next commit
# would have overwritten the newest transaction).
@case("meta-current-page-size-4097-checksum-valid")
def _(b: Base) -> Case:
    d = edit(b)
    rb.set_meta_field(d, b.raw.meta.index, b.raw.page_size, 8, 4097)
    return Case(bytes(d), REFUSE, message=rf"meta page {b.raw.meta.index}: bad page size 4097")


@case("meta-1-page-size-8192-checksum-valid")
def _(b: Base) -> Case:
    """Meta page 1 says 8192 (meta page 0 4096): bbolt would use it with 4096-byte pages."""
    d = edit(b)
    rb.set_meta_field(d, 1, b.raw.page_size, 8, 8192)
    return Case(bytes(d), REFUSE, message=r"meta page 1: page size 8192, but it lies at byte 4096")


# Found by bench/fuzz_bolt.py: the largest txid made the next commit a struct.error.
@case("meta-txid-max")
def _(b: Base) -> Case:
    """Meta page 1 (odd txids) gets the largest: it is read, but no txid can follow it."""
    d = edit(b)
    rb.set_meta_field(d, 1, b.raw.page_size, 48, 2**64 - 1)
    content = b.cur if b.raw.meta.index == 1 else b.prev
    return Case(bytes(d), OK, [content], write_refused=r"txid 18446744073709551615 cannot be")


# Found by bench/fuzz_bolt.py: a meta with a valid checksum whose txid bbolt writes to the
# other meta page; the next commit went to that page too, and left the other one as it was.
@case("meta-txid-on-the-wrong-page")
def _(b: Base) -> Case:
    d = edit(b)
    index = b.raw.meta.index
    rb.set_meta_field(d, index, b.raw.page_size, 48, b.raw.meta.txid + 1)
    return Case(bytes(d), REFUSE, message=rf"meta page {index}: txid \d+ .*meta page {1 - index}")


# tree structure -----------------------------------------------------------------------


def _branch_child(b: Base, index: int, child: int) -> bytes:
    d = edit(b)
    elem = first_branch(b).elems[index]
    rb.put_u64(d, elem.offset + 8, child)
    return bytes(d)


@case("branch-points-to-itself")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, first_branch(b).id), REFUSE, message=r"page \d+")


@case("branch-two-children-same-page")
def _(b: Base) -> Case:
    branch = first_branch(b)
    return Case(_branch_child(b, 1, branch.elems[0].child), REFUSE, message=r"page \d+")


@case("branch-child-beyond-hwm")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, b.raw.meta.pgid + 3), REFUSE, message=r"page \d+")


@case("branch-child-huge")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, 2**63 + 5), REFUSE, message=r"page \d+")


@case("branch-child-meta-page")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, 1), REFUSE, message=r"page \d+")


@case("branch-child-is-freelist")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, b.raw.meta.freelist), REFUSE, message=r"page \d+")


@case("branch-child-is-free-page")
def _(b: Base) -> Case:
    return Case(_branch_child(b, 0, b.raw.free[0]), REFUSE, message=r"page \d+")


def _bucket_value_root(b: Base, path: tuple[bytes, ...], root: int) -> bytes:
    """Set the root pgid stored in the parent's leaf for bucket ``path``."""
    d = edit(b)
    for page in b.raw.pages.values():
        if page.kind == "leaf" and page.bucket == path[:-1]:
            for elem in page.elems:
                if elem.key == path[-1] and elem.flags & rb.BUCKET_LEAF:
                    _, pos, ksize, _ = rb.LEAF_ELEM.unpack_from(d, elem.offset)
                    rb.put_u64(d, elem.offset + pos + ksize, root)
                    return bytes(d)
    raise AssertionError(f"bucket {path} not found")


@case("bucket-root-cycle-to-ancestor")
def _(b: Base) -> Case:
    ancestor = b.raw.bucket_roots[(b"podman1",)]
    data = _bucket_value_root(b, (b"podman1", b"10.89.0.0/16"), ancestor)
    return Case(data, REFUSE, message=r"page \d+")


@case("two-buckets-share-a-root")
def _(b: Base) -> Case:
    shared = b.raw.bucket_roots[(b"podman1", b"10.89.0.0/16")]
    data = _bucket_value_root(b, (b"podman1", b"ids"), shared)
    return Case(data, REFUSE, message=r"page \d+")


@case("bucket-root-is-meta")
def _(b: Base) -> Case:
    return Case(_bucket_value_root(b, (b"podman1", b"ids"), 0), EITHER, [], r"page|bucket|inline")


@case("page-overflow-overlaps-next-page")
def _(b: Base) -> Case:
    used = set(b.raw.pages) | set(b.raw.overflow_pages())
    leaf = min((p for p in b.raw.by_kind("leaf") if p.id + 1 in used), key=lambda p: p.id)
    d = edit(b)
    rb.put_u32(d, b.raw.page_offset(leaf.id) + 12, 1)
    return Case(bytes(d), REFUSE, message=r"page \d+")


@case("page-overflow-beyond-hwm")
def _(b: Base) -> Case:
    leaf = leaf_with_elems(b)
    d = edit(b)
    rb.put_u32(d, b.raw.page_offset(leaf.id) + 12, b.raw.meta.pgid)
    return Case(bytes(d), REFUSE, message=r"page \d+")


@case("freelist-lists-a-live-page")
def _(b: Base) -> Case:
    d = edit(b)
    live = leaf_with_elems(b).id
    rb.put_u64(d, b.raw.page_offset(b.raw.meta.freelist) + 16, live)  # replaces a free id
    return Case(bytes(d), EITHER, [b.cur], message=r"page \d+|free")


@case("freelist-id-beyond-hwm")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u64(d, b.raw.page_offset(b.raw.meta.freelist) + 16, b.raw.meta.pgid + 7)
    return Case(bytes(d), EITHER, [b.cur], message=r"page \d+|free")


@case("freelist-count-too-large")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u16(d, b.raw.page_offset(b.raw.meta.freelist) + 10, 0xFFFE)
    return Case(bytes(d), EITHER, [b.cur], message=r"page \d+|free")


@case("freelist-wrong-flags")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u16(d, b.raw.page_offset(b.raw.meta.freelist) + 8, rb.LEAF)
    return Case(bytes(d), EITHER, [b.cur], message=r"page \d+|free")


def _flags(b: Base, page: rb.Page, flags: int) -> bytes:
    d = edit(b)
    rb.put_u16(d, b.raw.page_offset(page.id) + 8, flags)
    return bytes(d)


@case("leaf-flags-freelist")
def _(b: Base) -> Case:
    return Case(_flags(b, leaf_with_elems(b), rb.FREELIST), REFUSE, message=r"page \d+")


@case("leaf-flags-meta")
def _(b: Base) -> Case:
    return Case(_flags(b, leaf_with_elems(b), rb.META_FLAG), REFUSE, message=r"page \d+")


@case("leaf-flags-zero")
def _(b: Base) -> Case:
    return Case(_flags(b, leaf_with_elems(b), 0), REFUSE, message=r"page \d+")


@case("leaf-flags-leaf-and-branch")
def _(b: Base) -> Case:
    return Case(_flags(b, leaf_with_elems(b), 3), REFUSE, message=r"page \d+")


@case("leaf-flags-branch")
def _(b: Base) -> Case:
    return Case(_flags(b, leaf_with_elems(b), rb.BRANCH), REFUSE, message=r"page \d+")


@case("branch-flags-leaf")
def _(b: Base) -> Case:
    return Case(_flags(b, first_branch(b), rb.LEAF), REFUSE, message=r"page \d+")


@case("page-header-id-mismatch")
def _(b: Base) -> Case:
    d = edit(b)
    page = leaf_with_elems(b)
    rb.put_u64(d, b.raw.page_offset(page.id), page.id + 1)
    return Case(bytes(d), EITHER, [b.cur], message=r"page \d+")


def _leaf_elem_field(b: Base, field_offset: int, value: int, index: int = 0) -> bytes:
    d = edit(b)
    elem = leaf_with_elems(b).elems[index]
    rb.put_u32(d, elem.offset + field_offset, value)
    return bytes(d)


@case("leaf-elem-pos-outside")
def _(b: Base) -> Case:
    return Case(_leaf_elem_field(b, 4, 0xFFFFFF00), REFUSE, message=r"page \d+")


@case("leaf-elem-ksize-outside")
def _(b: Base) -> Case:
    return Case(_leaf_elem_field(b, 8, b.raw.page_size * 3), REFUSE, message=r"page \d+")


@case("leaf-elem-vsize-outside")
def _(b: Base) -> Case:
    return Case(_leaf_elem_field(b, 12, 0x7FFFFFFF), REFUSE, message=r"page \d+")


@case("leaf-elem-key-empty")
def _(b: Base) -> Case:
    return Case(_leaf_elem_field(b, 8, 0), REFUSE, message=r"page \d+|key")


@case("leaf-empty-below-branch")
def _(b: Base) -> Case:
    """A leaf child of a branch without elements: its parent's key for it is no key of it."""
    d = edit(b)
    branch = first_branch(b)
    child = next(e.child for e in branch.elems[1:] if b.raw.pages[e.child].kind == "leaf")
    rb.put_u16(d, b.raw.page_offset(child) + 10, 0)
    return Case(bytes(d), REFUSE, message=rf"page {child} \(child of page {branch.id}\): .*empty")


@case("leaf-count-too-large")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u16(d, b.raw.page_offset(leaf_with_elems(b).id) + 10, 0xFFFF)
    return Case(bytes(d), REFUSE, message=r"page \d+")


@case("branch-elem-ksize-outside")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u32(d, first_branch(b).elems[0].offset + 4, 0x10000000)
    return Case(bytes(d), REFUSE, message=r"page \d+")


@case("branch-count-zero")
def _(b: Base) -> Case:
    d = edit(b)
    rb.put_u16(d, b.raw.page_offset(first_branch(b).id) + 10, 0)
    return Case(bytes(d), REFUSE, message=r"page \d+")


@case("leaf-keys-out-of-order")
def _(b: Base) -> Case:
    """Swap the first two elements of a leaf: the keys are then in the wrong order."""
    d = edit(b)
    page = leaf_with_elems(b)
    e0, e1 = page.elems[0], page.elems[1]
    f0, pos0, k0, v0 = rb.LEAF_ELEM.unpack_from(b.data, e0.offset)
    f1, pos1, k1, v1 = rb.LEAF_ELEM.unpack_from(b.data, e1.offset)
    rb.LEAF_ELEM.pack_into(d, e0.offset, f1, e1.offset + pos1 - e0.offset, k1, v1)
    rb.LEAF_ELEM.pack_into(d, e1.offset, f0, e0.offset + pos0 - e1.offset, k0, v0)
    return Case(bytes(d), EITHER, [], message=r"page \d+|order|sort")


@case("bucket-value-too-short")
def _(b: Base) -> Case:
    d = edit(b)
    for page in b.raw.by_kind("leaf"):
        for elem in page.elems:
            if elem.flags & rb.BUCKET_LEAF:
                rb.put_u32(d, elem.offset + 12, 8)
                return Case(bytes(d), REFUSE, message=r"page \d+|bucket")
    raise AssertionError("no bucket element")


@case("inline-bucket-elem-outside")
def _(b: Base) -> Case:
    d = edit(b)
    _, offset = b.raw.inline_buckets[0]
    _, pos, ksize, _ = rb.LEAF_ELEM.unpack_from(d, offset)
    inline_page = offset + pos + ksize + 16  # after the 16-byte bucket header
    rb.put_u32(d, inline_page + 16 + 4, 0x00FFFFFF)  # first element's pos
    return Case(bytes(d), REFUSE, message=r"page \d+|inline|bucket")


@case("inline-bucket-count-too-large")
def _(b: Base) -> Case:
    d = edit(b)
    _, offset = b.raw.inline_buckets[0]
    _, pos, ksize, _ = rb.LEAF_ELEM.unpack_from(d, offset)
    rb.put_u16(d, offset + pos + ksize + 16 + 10, 500)
    return Case(bytes(d), REFUSE, message=r"page \d+|inline|bucket")


# file size ----------------------------------------------------------------------------


def _truncate(b: Base, size: int) -> Case:
    return Case(b.data[:size], REFUSE, message=r"trunc|short|small|size|end of|beyond|bytes")


@case("truncated-half")
def _(b: Base) -> Case:
    return _truncate(b, b.raw.meta.pgid * b.raw.page_size // 2)


@case("truncated-last-page")
def _(b: Base) -> Case:
    return _truncate(b, (b.raw.meta.pgid - 1) * b.raw.page_size)


@case("truncated-mid-page")
def _(b: Base) -> Case:
    return _truncate(b, b.raw.meta.pgid * b.raw.page_size - 100)


@case("truncated-two-pages")
def _(b: Base) -> Case:
    return _truncate(b, 2 * b.raw.page_size)


@case("truncated-4095")
def _(b: Base) -> Case:
    return _truncate(b, 4095)


@case("truncated-100")
def _(b: Base) -> Case:
    return _truncate(b, 100)


@case("zero-length")
def _(b: Base) -> Case:
    return _truncate(b, 0)


@case("not-bbolt-text")
def _(b: Base) -> Case:
    return Case(b"# this is not a database\n" * 400, REFUSE, message=r"magic|not a bbolt|small")


# harmless damage ----------------------------------------------------------------------


@case("garbage-in-free-pages")
def _(b: Base) -> Case:
    d = edit(b)
    rng = random.Random(5)
    for pgid in b.raw.free:
        off = b.raw.page_offset(pgid)
        d[off : off + b.raw.page_size] = rng.randbytes(b.raw.page_size)
    return Case(bytes(d), OK, [b.cur], write_may_succeed=True)


@case("garbage-after-hwm")
def _(b: Base) -> Case:
    d = edit(b)
    rng = random.Random(6)
    start = b.raw.meta.pgid * b.raw.page_size
    d[start:] = rng.randbytes(len(d) - start)
    d += rng.randbytes(3 * b.raw.page_size)
    return Case(bytes(d), OK, [b.cur], write_may_succeed=True)


@case("garbage-in-unused-meta-bytes")
def _(b: Base) -> Case:
    d = edit(b)
    for i in (0, 1):
        off = i * b.raw.page_size + 80
        d[off : off + 200] = b"\xee" * 200
    return Case(bytes(d), OK, [b.cur], write_may_succeed=True)


# random byte flips --------------------------------------------------------------------

FLIP_KINDS = ("meta", "freelist", "branch", "leaf", "overflow")
FLIP_SEEDS = range(int(os.environ.get("IPAMGUARD_FLIP_SEEDS", "6")))


def _flip(kind: str, seed: int) -> Builder:
    def build(b: Base) -> Case:
        rng = random.Random(f"{kind}-{seed}")
        if kind == "meta":
            pages = [b.raw.meta.index]
            span = 80  # the part of a meta page that means something
        elif kind == "freelist":
            pages, span = [b.raw.meta.freelist], 16 + 8 * len(b.raw.free)
        elif kind == "overflow":
            pages, span = b.raw.overflow_pages(), b.raw.page_size
        else:
            chosen = b.raw.by_kind(kind)
            pages, span = [p.id for p in chosen], b.raw.page_size
        pgid = rng.choice(sorted(pages))
        d = edit(b)
        for _ in range(rng.randint(1, 4)):
            d[b.raw.page_offset(pgid) + rng.randrange(span)] ^= 1 << rng.randrange(8)
        return Case(bytes(d), EITHER, [], write_may_succeed=True)

    return build


for _kind in FLIP_KINDS:
    for _seed in FLIP_SEEDS:
        CASES[f"flip-{_kind}-{_seed}"] = _flip(_kind, _seed)


# --------------------------------------------------------------- running a case


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def go_view(oracle: Oracle, path: Path) -> dict[str, Any] | None:
    """Go's dump of the file if Go's check passes, else None."""
    try:
        if oracle.check(path):
            return None
        return oracle.dump(path)
    except OracleError:
        return None


def engine_read(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(content, "") or (None, InvalidDatabase message); any other exception fails the test."""
    from ipamguard.errors import InvalidDatabase

    try:
        return dump_python(path), ""
    except InvalidDatabase as error:
        return None, str(error)


def engine_write(path: Path) -> str:
    """ "" if committed, else the InvalidDatabase message; any other exception fails."""
    from ipamguard import bolt
    from ipamguard.errors import InvalidDatabase

    try:
        with bolt.DB.open(path, readonly=False, timeout=2.0) as db, db.update() as tx:
            bucket = tx.create_bucket_if_not_exists(b"written-after-damage")
            bucket.put(b"k", b"v")
            net = tx.bucket(b"podman1")
            if net is not None:  # touch the damaged tree too, not only the root leaf
                subnet = net.bucket(b"10.89.0.0/16")
                if subnet is not None:
                    subnet.delete(bytes([10, 89, 0, 3]))
    except InvalidDatabase as error:
        return str(error) or "<empty message>"
    return ""


def assert_message(message: str, pattern: str, name: str) -> None:
    assert message, f"{name}: InvalidDatabase without a message"
    assert "\n" not in message.strip(), f"{name}: a message of several lines: {message!r}"
    if pattern:
        assert re.search(pattern, message, re.IGNORECASE), (
            f"{name}: the message does not say what is wrong (want /{pattern}/): {message!r}"
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_damaged_file(oracle: Oracle, base: Base, tmp_path: Path, name: str) -> None:
    c = CASES[name](base)
    path = tmp_path / "ipam.db"
    path.write_bytes(c.data)
    digest = sha256(path)
    go = go_view(oracle, path)
    if c.read == OK:
        assert go in c.expect, f"{name}: the test expects content that Go does not read"

    # Read.
    content, refusal = engine_read(path)
    assert sha256(path) == digest, f"{name}: reading changed the file"
    if c.read == REFUSE:
        assert content is None, f"{name}: read a damaged file without complaint"
        assert_message(refusal, c.message, name)
    elif c.read == OK:
        assert content is not None, f"{name}: refused a readable file: {refusal}"
        assert content in c.expect, f"{name}: wrong content"
    elif content is None:
        assert_message(refusal, c.message, name)
    else:
        assert go is not None, f"{name}: read a file that Go's check refuses: {oracle.check(path)}"
        assert content == go, f"{name}: content differs from Go's view of the same file"
        if c.expect:
            assert content in c.expect, f"{name}: wrong content"

    # Write.
    refusal = engine_write(path)
    if c.write_refused:
        assert_message(refusal, c.write_refused, name)
    if refusal:
        assert sha256(path) == digest, f"{name}: a refused write changed the file"
        if c.read == REFUSE:
            assert_message(refusal, c.message, name)
        return
    assert c.write_may_succeed or content is not None, f"{name}: wrote on a file it cannot read"
    errors = oracle.check(path)
    assert errors == [], f"{name}: the engine wrote on a damaged file and broke it: {errors[:5]}"
    assert content is not None
    model = Model.from_dump(content)
    model.apply(create_bucket([], b"written-after-damage"))
    model.apply(put([b"written-after-damage"], b"k", b"v"))
    if b"podman1" in model.root.buckets:
        model.apply(delete([b"podman1", b"10.89.0.0/16"], bytes([10, 89, 0, 3])))
    assert oracle.dump(path) == model.dump(), f"{name}: wrong content after the write"


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("flip-")))
def test_oracle_check_flags_damage(oracle: Oracle, base: Base, tmp_path: Path, name: str) -> None:
    """The oracle itself: every file the engine must refuse fails Go's check, without a crash."""
    c = CASES[name](base)
    path = tmp_path / "ipam.db"
    path.write_bytes(c.data)
    errors = oracle.check(path)  # exit 2 (a crash of the oracle) raises OracleError
    if c.read == REFUSE:
        assert errors, f"{name}: Go's check accepts a file the engine must refuse"
    elif c.read == OK and c.expect == [base.cur]:
        assert errors == [], f"{name}: harmless damage, yet: {errors[:3]}"


CLI_CASES = [
    "zero-length",
    "meta-bad-magic-both",
    "truncated-half",
    "branch-points-to-itself",
    "leaf-elem-pos-outside",
    "leaf-empty-below-branch",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_reports_damage_in_one_line(base: Base, tmp_path: Path, name: str) -> None:
    path = tmp_path / "ipam.db"
    path.write_bytes(CASES[name](base).data)
    digest = sha256(path)
    proc = subprocess.run(
        [sys.executable, "-m", "ipamguard", "dump", "--db", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipamguard: error:"), lines
    assert sha256(path) == digest


@pytest.mark.parametrize("name", sorted(CASES))
def test_incremental_validation_refuses_what_full_validation_refuses(base: Base, name: str) -> None:
    """The daemon validates each new version of ipam.db reusing the results of the pages
    that did not change since the last version it validated. For every damaged file,
    validated after the valid base: the same verdict and the same content as a full
    validation of it alone."""
    from ipamguard.bolt.check import load_snapshot
    from ipamguard.errors import InvalidDatabase

    damaged = CASES[name](base).data
    previous = load_snapshot(base.data)

    def outcome(data: bytes, earlier: Any) -> tuple[str, Any]:
        try:
            snapshot = load_snapshot(data, earlier)
        except InvalidDatabase as error:
            return "refused", str(error)
        tx = __import__("ipamguard.bolt.tx", fromlist=["Tx"]).Tx(snapshot, writable=False)
        return "read", dump_tx(tx)

    full = outcome(damaged, None)
    incremental = outcome(damaged, previous)
    assert incremental == full, f"{name}: incremental {incremental[0]}, full {full[0]}"


def dump_tx(tx: Any) -> dict[str, Any]:
    def walk(bucket: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in bucket.items():
            out[key.hex()] = walk(bucket.bucket(key)) if value is None else value.hex()
        return out

    return walk(tx.root)


def test_incremental_validation_reuses_unchanged_pages(oracle: Oracle, tmp_path: Path) -> None:
    """A podman-like commit (one allocation) rewrites a handful of pages: the others'
    checks are reused, and the result is the same as a full validation."""
    from ipamguard.bolt.check import _Checker, load_snapshot, select_meta
    from ipamguard.bolt.reuse import changed_pages, page_digests

    path = tmp_path / "ipam.db"
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", 5000, ids_per_tx=500)
    before = path.read_bytes()
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", 1, first_index=9000)
    after = path.read_bytes()
    previous = load_snapshot(before)
    size = previous.meta.page_size
    changed = changed_pages(page_digests(before, size), page_digests(after, size))
    assert 0 < len(changed) < 20, changed
    from ipamguard.bolt.reuse import Reuse

    checker = _Checker(after, select_meta(after), Reuse.of(previous, changed))
    incremental = checker.run()
    full = load_snapshot(after)
    assert checker.reused > 0.9 * len(full.info), (checker.reused, len(full.info))
    assert incremental.free == full.free and incremental.info == full.info
    from ipamguard.bolt.tx import Tx

    assert dump_tx(Tx(incremental, writable=False)) == dump_tx(Tx(full, writable=False))
