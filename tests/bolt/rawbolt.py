"""A small, independent reader of the bbolt layout, to aim damage at the right bytes.

It does not share code with ipamguard's engine (on purpose): it finds the meta
pages, the freelist page, the branch, leaf and overflow pages of every bucket
and the file offsets of their elements, so that tests can break exactly one
thing. It trusts its input (it is only used on valid, Go-written files).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META = struct.Struct(
    "<IIII QQ QQQ Q"
)  # magic version pagesize flags root seq freelist pgid txid csum
LEAF_ELEM = struct.Struct("<IIII")  # flags pos ksize vsize
BRANCH_ELEM = struct.Struct("<IIQ")  # pos ksize pgid
BRANCH, LEAF, META_FLAG, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01
META_OFFSET = 16  # the meta struct follows the page header
CHECKSUM_OFFSET = META_OFFSET + 56


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass
class Elem:
    offset: int  # file offset of the element header
    key: bytes
    flags: int = 0  # leaf: 1 = bucket
    value: bytes = b""  # leaf
    child: int = 0  # branch: child page id


@dataclass
class Page:
    id: int
    flags: int
    count: int
    overflow: int
    bucket: tuple[bytes, ...]
    elems: list[Elem] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "branch" if self.flags & BRANCH else "leaf"


@dataclass
class Meta:
    index: int
    magic: int
    version: int
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int
    checksum: int


class RawFile:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.page_size = struct.unpack_from("<I", data, META_OFFSET + 8)[0]
        self.metas = [self._meta(0), self._meta(1)]
        self.meta = max(self.metas, key=lambda m: m.txid)
        self.other = self.metas[1 - self.meta.index]
        self.pages: dict[int, Page] = {}
        self.bucket_roots: dict[tuple[bytes, ...], int] = {(): self.meta.root}
        self.inline_buckets: list[tuple[tuple[bytes, ...], int]] = []  # (path, elem offset)
        self._walk(self.meta.root, ())
        self.free = self._freelist()

    def _meta(self, index: int) -> Meta:
        values = META.unpack_from(self.data, index * self.page_size + META_OFFSET)
        return Meta(index, *values)

    def _freelist(self) -> list[int]:
        off = self.meta.freelist * self.page_size
        _, _, count, _ = PAGE_HEADER.unpack_from(self.data, off)
        start = off + 16
        if count == 0xFFFF:
            count = struct.unpack_from("<Q", self.data, start)[0]
            start += 8
        return list(struct.unpack_from(f"<{count}Q", self.data, start))

    def _walk(self, pgid: int, bucket: tuple[bytes, ...]) -> None:
        off = pgid * self.page_size
        _, flags, count, overflow = PAGE_HEADER.unpack_from(self.data, off)
        page = Page(pgid, flags, count, overflow, bucket)
        self.pages[pgid] = page
        for i in range(count):
            eoff = off + 16 + 16 * i
            if flags & BRANCH:
                pos, ksize, child = BRANCH_ELEM.unpack_from(self.data, eoff)
                key = self.data[eoff + pos : eoff + pos + ksize]
                page.elems.append(Elem(eoff, key, child=child))
                self._walk(child, bucket)
            else:
                eflags, pos, ksize, vsize = LEAF_ELEM.unpack_from(self.data, eoff)
                key = self.data[eoff + pos : eoff + pos + ksize]
                value = self.data[eoff + pos + ksize : eoff + pos + ksize + vsize]
                page.elems.append(Elem(eoff, key, eflags, value))
                if eflags & BUCKET_LEAF:
                    root = struct.unpack_from("<Q", value)[0]
                    if root:
                        self.bucket_roots[(*bucket, key)] = root
                        self._walk(root, (*bucket, key))
                    else:
                        self.inline_buckets.append(((*bucket, key), eoff))

    def by_kind(self, kind: str) -> list[Page]:
        return [p for p in self.pages.values() if p.kind == kind]

    def overflow_pages(self) -> list[int]:
        """Ids of the continuation pages of pages with overflow > 0."""
        return [p.id + i for p in self.pages.values() for i in range(1, p.overflow + 1)]

    def page_offset(self, pgid: int) -> int:
        return pgid * self.page_size


# --------------------------------------------------------------- editing


def put_u16(data: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<H", data, offset, value)


def put_u32(data: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<I", data, offset, value)


def put_u64(data: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<Q", data, offset, value)


def fix_meta_checksum(data: bytearray, index: int, page_size: int) -> None:
    """Recompute a meta's FNV-64a checksum after an edit (a *valid-looking* bad meta)."""
    off = index * page_size + META_OFFSET
    put_u64(data, off + 56, fnv64a(bytes(data[off : off + 56])))


def set_meta_field(
    data: bytearray, index: int, page_size: int, field_offset: int, value: int, fix: bool = True
) -> None:
    """field_offset: 0 magic, 4 version, 8 pagesize, 16 root, 32 freelist, 40 pgid, 48 txid."""
    off = index * page_size + META_OFFSET + field_offset
    if field_offset < 16:
        put_u32(data, off, value)
    else:
        put_u64(data, off, value)
    if fix:
        fix_meta_checksum(data, index, page_size)


def subtree_last_key(raw: RawFile, pgid: int) -> bytes:
    """The largest key under page ``pgid`` (its last element's key, down to a leaf)."""
    page = raw.pages[pgid]
    while page.kind == "branch":
        page = raw.pages[page.elems[-1].child]
    return page.elems[-1].key


def set_branch_key(data: bytearray, raw: RawFile, pgid: int, index: int, key: bytes) -> None:
    """Give element ``index`` of branch page ``pgid`` the key ``key`` (any length).

    The page's elements and keys are written again as bbolt lays them out (elements,
    then the keys in order); children, header and overflow stay as they were.
    """
    page = raw.pages[pgid]
    assert page.kind == "branch", f"page {pgid} is a {page.kind}"
    keys = [elem.key for elem in page.elems]
    keys[index] = key
    size = (page.overflow + 1) * raw.page_size
    body = bytearray(size - 16)
    data_at = 16 * len(keys)
    for i, (elem, k) in enumerate(zip(page.elems, keys, strict=True)):
        BRANCH_ELEM.pack_into(body, 16 * i, data_at - 16 * i, len(k), elem.child)
        body[data_at : data_at + len(k)] = k
        data_at += len(k)
    assert data_at <= len(body), f"page {pgid}: the new key does not fit"
    start = raw.page_offset(pgid) + 16
    data[start : start + len(body)] = body
