"""What the fuzzer damages: Go-written base files, the regions of their pages, mutations.

Bases are files that Go's bbolt wrote: ipam.db as netavark writes it (network buckets,
subnet buckets of 4- and 16-byte IP keys -> 64-hex container IDs, ``ids`` buckets of
container ID -> JSON list, inline buckets of small networks, free pages) and generic files
(deep trees of long keys in 1 KiB pages, overflow values, nested and inline buckets,
sequences). Each transaction of a base touches the pages of one bucket only (bbolt spills
sibling buckets in map order), so Go writes the same bytes on every run and a seed
reproduces its cases anywhere.

A region is a field (an integer of 2, 4 or 8 bytes), a key, a value or a whole page, in
one kind of page: meta, freelist, branch, leaf, overflow, bucket value (the 16-byte
header), inline bucket, free page. A mutation changes one region (a bit, a byte, several
bytes, +-1, 0, all ones, a stray page id, a stale copy of the same field elsewhere, a key
moved to another value in order) or several at once; a changed meta gets a valid checksum
again more often than not, so that the meaning of its fields is tested, not the checksum.
"""

from __future__ import annotations

import ipaddress
import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import rawbolt as rb
from ops import Op, create_bucket, delete, put, set_sequence
from oracle_tool import Oracle, container_id

GROUPS = ("meta", "freelist", "branch", "leaf", "overflow", "bucket", "inline", "free", "multi")


# --------------------------------------------------------------- bases


@dataclass
class Base:
    name: str
    data: bytes
    raw: rb.RawFile
    ipam: bool  # netavark's layout: writes are releases and allocations
    regions: dict[str, list[Region]] = field(default_factory=dict)  # by group

    @property
    def page_size(self) -> int:
        return self.raw.page_size


def _one_bucket_txs(
    path: list[bytes], items: list[tuple[bytes, bytes]], per_tx: int
) -> list[list[Op]]:
    return [
        [put(path, k, v) for k, v in items[i : i + per_tx]] for i in range(0, len(items), per_tx)
    ]


def ipam_txs() -> list[list[Op]]:
    """ipam.db as netavark fills it: three networks (one dual-stack, one small enough for
    inline buckets), then a quarter of the first one's containers released. netavark writes
    an allocation's IP key and ids entry in one transaction; here the subnet's keys and the
    ids entries go in transactions of their own (the same content, stable bytes)."""
    rng = random.Random(7)
    txs: list[list[Op]] = []
    nets = {
        b"podman1": [b"10.89.0.0/16"],
        b"podman2": [b"fd00:0:0:1::/64", b"10.90.0.0/24"],
        b"podman3": [b"10.91.0.0/24"],
    }
    for net, subnets in nets.items():
        txs.append([create_bucket([], net), *(create_bucket([net], s) for s in subnets)])
        txs[-1].append(create_bucket([net], b"ids"))
    index = 0

    def allocate(net: bytes, subnet: bytes, count: int, first: int, also: bytes | None) -> None:
        nonlocal index
        network = ipaddress.ip_network(subnet.decode())
        keys: list[tuple[bytes, bytes]] = []
        ids: list[tuple[bytes, bytes]] = []
        for n in range(count):
            ip = network.network_address + first + n
            cid = container_id(index).encode()
            index += 1
            ips = [str(ip)]
            keys.append((ip.packed, cid))
            if also is not None and n < 8:  # dual stack: an address in each subnet
                second = ipaddress.ip_network(also.decode()).network_address + 2 + n
                txs.append([put([net, also], second.packed, cid)])
                ips.append(str(second))
            ids.append((cid, json.dumps(ips, separators=(",", ":")).encode()))
        keys.append((b"lastIP", keys[-1][0]))
        txs.extend(_one_bucket_txs([net, subnet], keys, 300))
        txs.extend(_one_bucket_txs([net, b"ids"], ids, 300))

    allocate(b"podman1", b"10.89.0.0/16", 1200, 2, None)
    allocate(b"podman2", b"fd00:0:0:1::/64", 150, 2, b"10.90.0.0/24")
    allocate(b"podman3", b"10.91.0.0/24", 3, 2, None)
    # podman rm of a quarter of podman1's containers: free pages, merged leaves
    gone = sorted(rng.sample(range(1200), 300))
    net1 = ipaddress.ip_network("10.89.0.0/16").network_address
    txs.append([delete([b"podman1", b"10.89.0.0/16"], (net1 + 2 + i).packed) for i in gone])
    txs.append([delete([b"podman1", b"ids"], container_id(i).encode()) for i in gone])
    return txs


def deep_txs() -> list[list[Op]]:
    """Long keys in 1 KiB pages: a tree three pages deep (branches of branches), overflow
    values, an inline bucket, then deletes (merged pages, free pages)."""
    rng = random.Random(8)
    keys = sorted({rng.randbytes(rng.randint(30, 90)) for _ in range(600)})
    items = [(k, rng.randbytes(rng.randint(0, 40))) for k in keys]
    rng.shuffle(items)
    txs: list[list[Op]] = [[create_bucket([], b"deep"), create_bucket([], b"side")]]
    txs += _one_bucket_txs([b"deep"], items, 150)
    txs += [[put([b"side"], b"blob%d" % i, rng.randbytes(2500 + 700 * i)) for i in range(3)]]
    txs += [[create_bucket([b"side"], b"inline"), put([b"side", b"inline"], b"k", b"v")]]
    txs += [[delete([b"deep"], k) for k, _ in items[:150]]]
    return txs


def mixed_txs() -> list[list[Op]]:
    """Overflow values, nested buckets at three levels, inline buckets, sequences."""
    rng = random.Random(9)
    a, ab, abc = [b"a"], [b"a", b"b"], [b"a", b"b", b"c"]
    txs: list[list[Op]] = [
        [create_bucket([], b"a"), create_bucket(a, b"b"), create_bucket(ab, b"c")],
        [put(a, b"k%03d" % i, rng.randbytes(rng.randint(0, 120))) for i in range(300)],
        [put(ab, b"big%d" % i, rng.randbytes(n)) for i, n in enumerate([5000, 9000, 20000])],
        [put(abc, b"x%02d" % i, rng.randbytes(30)) for i in range(60)],
        [create_bucket(a, b"inl%d" % i) for i in range(4)],
        *[[put([*a, b"inl%d" % i], b"v", b"%d" % i)] for i in range(4)],
        [set_sequence(ab, 77), set_sequence([*a, b"inl1"], 2**40)],
        [create_bucket([], b"z"), put([b"z"], b"only", b"")],
        [delete(a, b"k%03d" % i) for i in range(0, 300, 3)],
        [put(ab, b"big1", b"small now")],
    ]
    return txs


BASE_SPECS: dict[str, tuple[Callable[[], list[list[Op]]], int, bool]] = {
    "ipam-4096": (ipam_txs, 4096, True),
    "deep-1024": (deep_txs, 1024, False),
    "mixed-4096": (mixed_txs, 4096, False),
}


def build_bases(oracle: Oracle, workdir: Path) -> list[Base]:
    bases = []
    for name, (make, page_size, ipam) in BASE_SPECS.items():
        path = workdir / f"base-{name}.db"
        if path.exists():
            path.unlink()
        oracle.apply(path, make(), page_size=page_size)
        errors = oracle.check(path)
        assert errors == [], f"base {name}: Go's check: {errors[:3]}"
        data = path.read_bytes()
        base = Base(name, data, rb.RawFile(data), ipam)
        base.regions = find_regions(base.raw)
        bases.append(base)
    return bases


# --------------------------------------------------------------- regions


@dataclass(frozen=True)
class Region:
    group: str  # page type: meta, freelist, branch, leaf, overflow, bucket, inline, free
    name: str  # what it is: "elem.ksize", "key", "header.count", ...
    start: int
    size: int
    width: int = 0  # an integer field of this many bytes (little-endian), else bytes
    meta: int = -1  # the meta page it sits in (to fix the checksum)
    page: int = -1  # branch key: the page and element index (for the key shift)
    index: int = -1


META_FIELDS = [
    (0, 4, "magic"), (4, 4, "version"), (8, 4, "page_size"), (12, 4, "flags"),
    (16, 8, "root"), (24, 8, "sequence"), (32, 8, "freelist"), (40, 8, "hwm"),
    (48, 8, "txid"), (56, 8, "checksum"),
]  # fmt: skip
HEADER_FIELDS = [(0, 8, "id"), (8, 2, "flags"), (10, 2, "count"), (12, 4, "overflow")]
BRANCH_ELEM_FIELDS = [(0, 4, "pos"), (4, 4, "ksize"), (8, 8, "pgid")]
LEAF_ELEM_FIELDS = [(0, 4, "flags"), (4, 4, "pos"), (8, 4, "ksize"), (12, 4, "vsize")]


def _fields(
    group: str, prefix: str, at: int, spec: list[tuple[int, int, str]], meta: int = -1
) -> list[Region]:
    return [Region(group, f"{prefix}{n}", at + o, w, w, meta) for o, w, n in spec]


def find_regions(raw: rb.RawFile) -> dict[str, list[Region]]:
    ps = raw.page_size
    out: dict[str, list[Region]] = {g: [] for g in GROUPS if g != "multi"}
    for m in raw.metas:
        which = "current" if m.index == raw.meta.index else "older"
        at = m.index * ps
        out["meta"] += _fields("meta", f"{which}.header.", at, HEADER_FIELDS, m.index)
        out["meta"] += _fields("meta", f"{which}.", at + 16, META_FIELDS, m.index)
    fl = raw.meta.freelist * ps
    out["freelist"] += _fields("freelist", "header.", fl, HEADER_FIELDS)
    out["freelist"] += [
        Region("freelist", "entry", fl + 16 + 8 * i, 8, 8) for i in range(len(raw.free))
    ]
    for page in raw.pages.values():
        for region in _page_regions(raw, page):  # bucket values and inline pages too
            out[region.group].append(region)
    for pgid in raw.overflow_pages():
        out["overflow"].append(Region("overflow", "page", pgid * ps, ps))
    for pgid in raw.free:
        out["free"].append(Region("free", "page", pgid * ps, ps))
    return {g: r for g, r in out.items() if r}


def _page_regions(raw: rb.RawFile, page: rb.Page) -> list[Region]:
    group, at = page.kind, raw.page_offset(page.id)
    regions = _fields(group, "header.", at, HEADER_FIELDS)
    end = at + 16 + 16 * len(page.elems)
    for i, elem in enumerate(page.elems):
        if group == "branch":
            regions += _fields(group, "elem.", elem.offset, BRANCH_ELEM_FIELDS)
            pos = struct.unpack_from("<I", raw.data, elem.offset)[0]
            key_at = elem.offset + pos
            regions.append(Region(group, "key", key_at, len(elem.key), page=page.id, index=i))
            end = max(end, key_at + len(elem.key))
            continue
        regions += _fields(group, "elem.", elem.offset, LEAF_ELEM_FIELDS)
        _, pos, ksize, vsize = rb.LEAF_ELEM.unpack_from(raw.data, elem.offset)
        key_at = elem.offset + pos
        value_at = key_at + ksize
        regions.append(Region(group, "key", key_at, ksize))
        end = max(end, value_at + vsize)
        if elem.flags & rb.BUCKET_LEAF:
            regions += _bucket_value_regions(raw.data, value_at)
        elif vsize:
            regions.append(Region(group, "value", value_at, vsize))
    slack = at + (page.overflow + 1) * raw.page_size - end
    if slack > 0 and page.overflow == 0:  # continuation pages are "overflow" regions
        regions.append(Region(group, "slack", end, slack))
    return regions


def _bucket_value_regions(data: bytes, at: int) -> list[Region]:
    regions = [Region("bucket", "root", at, 8, 8), Region("bucket", "sequence", at + 8, 8, 8)]
    if struct.unpack_from("<Q", data, at)[0] != 0:
        return regions
    page = at + 16
    regions += _fields("inline", "header.", page, HEADER_FIELDS)
    count = struct.unpack_from("<H", data, page + 10)[0]
    for i in range(count):
        elem = page + 16 + 16 * i
        regions += _fields("inline", "elem.", elem, LEAF_ELEM_FIELDS)
        flags, pos, ksize, vsize = rb.LEAF_ELEM.unpack_from(data, elem)
        regions.append(Region("inline", "key", elem + pos, ksize))
        if flags & rb.BUCKET_LEAF:
            regions += _bucket_value_regions(data, elem + pos + ksize)
        elif vsize:
            regions.append(Region("inline", "value", elem + pos + ksize, vsize))
    return regions


# --------------------------------------------------------------- mutations


@dataclass
class Mutation:
    data: bytes
    group: str
    what: list[str]  # one description per edit


def _edit_int(data: bytearray, r: Region, rng: random.Random, base: Base) -> str:
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[r.width]
    bits = 8 * r.width
    old = struct.unpack_from(fmt, data, r.start)[0]
    op = rng.choice(["bit", "bit", "inc", "dec", "small", "zero", "ones", "rand", "page", "copy"])
    if op == "bit":
        new = old ^ (1 << rng.randrange(bits))
    elif op in ("inc", "dec", "small"):
        step = {"inc": 1, "dec": -1}.get(op) or rng.choice([-1, 1]) * rng.randint(2, 64)
        new = (old + step) % (1 << bits)
    elif op == "zero":
        new = 0
    elif op == "ones":
        new = (1 << bits) - 1
    elif op == "rand":
        new = rng.getrandbits(bits)
    elif op == "page":  # another page id, as a stray pointer would
        new = rng.randrange(0, base.raw.meta.pgid + 3) % (1 << bits)
    else:  # the same field of another element/page (a plausible stale copy)
        same = [x for x in base.regions[r.group] if x.name == r.name and x.start != r.start]
        if not same:
            new = old ^ 1
        else:
            other = rng.choice(same)
            new = struct.unpack_from(fmt, base.data, other.start)[0]
    struct.pack_into(fmt, data, r.start, new)
    return f"{r.group}.{r.name}@{r.start}: {op} {old:#x}->{new:#x}"


def _edit_bytes(data: bytearray, r: Region, rng: random.Random, base: Base) -> str:
    ops = ["bit", "bit", "byte", "bytes", "zero"]
    if r.name == "key":
        ops += ["last+1", "last-1"]
        if r.group == "branch" and r.index >= 1:
            ops += ["shift", "shift"]
    op = rng.choice(ops)
    if op == "bit":
        n = rng.randint(1, 4)
        for _ in range(n):
            data[r.start + rng.randrange(r.size)] ^= 1 << rng.randrange(8)
        return f"{r.group}.{r.name}@{r.start}+{r.size}: {n} bit(s)"
    if op in ("byte", "bytes"):
        n = 1 if op == "byte" else rng.randint(2, 8)
        for _ in range(n):
            data[r.start + rng.randrange(r.size)] = rng.randrange(256)
        return f"{r.group}.{r.name}@{r.start}+{r.size}: {n} random byte(s)"
    if op == "zero":
        at = r.start + rng.randrange(r.size)
        n = rng.randint(1, min(8, r.start + r.size - at))
        data[at : at + n] = bytes(n)
        return f"{r.group}.{r.name}@{at}: {n} zero byte(s)"
    if op == "shift":  # in order, yet not the child's first key (the branch-key class)
        page = base.raw.pages[r.page]
        key = rb.subtree_last_key(base.raw, page.elems[r.index - 1].child) + b"\x00"
        rb.set_branch_key(data, base.raw, r.page, r.index, key)
        return f"branch.key page {r.page} element {r.index}: -> last key before it + 00"
    last = r.start + r.size - 1
    data[last] = (data[last] + (1 if op == "last+1" else -1)) % 256
    return f"{r.group}.{r.name}@{r.start}+{r.size}: {op}"


def _edit(data: bytearray, r: Region, rng: random.Random, base: Base) -> str:
    what = (_edit_int if r.width else _edit_bytes)(data, r, rng, base)
    if r.group == "meta" and r.name.split(".")[-1] != "checksum" and rng.random() < 0.6:
        rb.fix_meta_checksum(data, r.meta, base.page_size)
        what += " (checksum fixed)"
    return what


def mutate(base: Base, rng: random.Random) -> Mutation:
    data = bytearray(base.data)
    groups = sorted(base.regions)
    if rng.random() < 0.15:  # several regions at once, of any kinds
        what = []
        for _ in range(rng.randint(2, 4)):
            r = rng.choice(base.regions[rng.choice(groups)])
            what.append(_edit(data, r, rng, base))
        return Mutation(bytes(data), "multi", what)
    group = rng.choice(groups)
    what = [_edit(data, rng.choice(base.regions[group]), rng, base)]
    return Mutation(bytes(data), group, what)
