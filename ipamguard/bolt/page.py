"""bbolt's on-disk codecs: page header, meta, leaf/branch elements, freelist.

Plain functions over bytes, no I/O. Every parser checks every bound it reads
and raises ``InvalidDatabase`` with the page id and what is wrong, so that a
damaged file is refused with a precise message, never an IndexError.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from ipamguard.errors import InvalidDatabase

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER_SIZE = 16
ELEMENT_SIZE = 16  # both leaf and branch elements are 16 bytes
BUCKET_HEADER_SIZE = 16  # {root pgid u64, sequence u64}
META_SIZE = 64
NO_FREELIST = 0xFFFFFFFFFFFFFFFF

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01

MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 1 << 16

# A whole file as read: bytes, or for a large one an anonymous mapping (db.py reads it
# into memory that takes 2 MB pages); both slice to bytes and read as buffers
FileData = bytes | mmap.mmap

_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")  # magic..txid, checksum
_ELEMENT = struct.Struct("<IIII")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_BUCKET = struct.Struct("<QQ")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


def fnv64a(data: bytes) -> int:
    """FNV-1a, 64 bit: the checksum bbolt keeps in its meta page."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return value


@dataclass
class Meta:
    """A meta page: the root of one committed state of the database."""

    page_size: int
    flags: int
    root: int  # root bucket's root page
    sequence: int  # root bucket's sequence
    freelist: int
    high_water_mark: int  # bbolt's meta.pgid: first page id past the end
    txid: int
    magic: int = MAGIC
    version: int = VERSION
    checksum: int = 0

    def body(self) -> bytes:
        return _META.pack(
            self.magic,
            self.version,
            self.page_size,
            self.flags,
            self.root,
            self.sequence,
            self.freelist,
            self.high_water_mark,
            self.txid,
            0,
        )[:56]

    def encode_page(self) -> bytes:
        """The whole meta page, written at page ``txid % 2``."""
        body = self.body()
        self.checksum = fnv64a(body)
        header = _HEADER.pack(self.txid % 2, META_PAGE, 0, 0)
        page = header + body + struct.pack("<Q", self.checksum)
        return page + bytes(self.page_size - len(page))


def decode_meta(buf: FileData, offset: int) -> Meta | str:
    """The meta at page ``offset`` if it validates as bbolt's meta.validate() has it (magic,
    version, checksum), else a string saying why not. Its page size is not checked here:
    ``check.select_meta`` knows where the meta was found."""
    if offset + PAGE_HEADER_SIZE + META_SIZE > len(buf):
        return "truncated"
    fields = _META.unpack_from(buf, offset + PAGE_HEADER_SIZE)
    magic, version, page_size, flags, root, seq, freelist, hwm, txid, checksum = fields
    if magic != MAGIC:
        return f"bad magic {magic:#010x}"
    if version != VERSION:
        return f"unsupported version {version}"
    body = bytes(buf[offset + PAGE_HEADER_SIZE : offset + PAGE_HEADER_SIZE + 56])
    if checksum != 0 and checksum != fnv64a(body):
        return "checksum mismatch"
    return Meta(page_size, flags, root, seq, freelist, hwm, txid, magic, version, checksum)


@dataclass(frozen=True, slots=True)
class PageHeader:
    id: int
    flags: int
    count: int
    overflow: int


def decode_header(buf: FileData, offset: int) -> PageHeader:
    if offset < 0 or offset + PAGE_HEADER_SIZE > len(buf):
        raise InvalidDatabase(f"page at offset {offset}: beyond the end of the file")
    return PageHeader(*_HEADER.unpack_from(buf, offset))


class Page:
    """A decoded branch or leaf page (also an inline bucket's page).

    Leaves have ``keys``, ``values`` and ``flags``; branches have ``keys`` and
    ``pgids`` (child page ids). The same attribute names as ``Node`` so that a
    cursor walks either.
    """

    __slots__ = ("flags", "id", "is_leaf", "keys", "overflow", "pgids", "values")

    def __init__(self, pgid: int, is_leaf: bool, overflow: int) -> None:
        self.id = pgid
        self.is_leaf = is_leaf
        self.overflow = overflow
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.flags: list[int] = []
        self.pgids: list[int] = []


def decode_page(buf: FileData, offset: int, end: int, pgid: int) -> Page:
    """Decode the branch/leaf page at ``offset``; its bytes end at ``end``.

    Checks the type, that every element, key and value lies inside the page,
    that keys are non-empty and strictly ascending, and that leaf flags are known.
    """
    header = decode_header(buf, offset)
    if header.flags == LEAF_PAGE:
        is_leaf = True
    elif header.flags == BRANCH_PAGE:
        is_leaf = False
    else:
        raise InvalidDatabase(f"page {pgid}: invalid type {header.flags:#x}")
    count = header.count
    elements_end = offset + PAGE_HEADER_SIZE + count * ELEMENT_SIZE
    if elements_end > end or end > len(buf):
        raise InvalidDatabase(f"page {pgid}: {count} elements do not fit in the page")
    page = Page(pgid, is_leaf, header.overflow)
    start = offset + PAGE_HEADER_SIZE
    if not is_leaf and count == 0:
        raise InvalidDatabase(f"page {pgid}: branch page without elements")
    if count == 0:
        return page
    raw = buf[start:elements_end]
    # element i's key starts at start + 16*i + pos (pos is relative to the element)
    if is_leaf:
        elements = list(_ELEMENT.iter_unpack(raw))
        key_at = [start + 16 * i + e[1] for i, e in enumerate(elements)]
        key_end = [k + e[2] for k, e in zip(key_at, elements, strict=True)]
        value_end = [k + e[3] for k, e in zip(key_end, elements, strict=True)]
        sizes = [e[2] for e in elements]
        page.flags = [e[0] for e in elements]
        if max(page.flags) & ~BUCKET_LEAF_FLAG:
            raise InvalidDatabase(f"page {pgid}: an element has unknown flags")
        last = max(value_end)
    else:
        branch = list(_BRANCH_ELEMENT.iter_unpack(raw))
        key_at = [start + 16 * i + e[0] for i, e in enumerate(branch)]
        key_end = [k + e[1] for k, e in zip(key_at, branch, strict=True)]
        sizes = [e[1] for e in branch]
        page.pgids = [e[2] for e in branch]
        last = max(key_end)
    if min(sizes) == 0 or min(key_at) < elements_end or last > end:
        raise InvalidDatabase(f"page {pgid}: an element lies outside the page")
    page.keys = keys = [buf[a:b] for a, b in zip(key_at, key_end, strict=True)]
    if is_leaf:
        page.values = [buf[a:b] for a, b in zip(key_end, value_end, strict=True)]
    if sorted(keys) != keys or len(set(keys)) != len(keys):
        raise InvalidDatabase(f"page {pgid}: keys out of order or repeated")
    return page


def encode_page(
    pgid: int,
    is_leaf: bool,
    keys: list[bytes],
    values: list[bytes],
    flags: list[int],
    children: list[int],
    size: int,
    overflow: int = 0,
) -> bytearray:
    """Serialize a node as bbolt's node.write does, into ``size`` bytes."""
    count = len(keys)
    if count >= 0xFFFF:
        raise AssertionError(f"inode overflow: {count} (pgid={pgid})")
    out = bytearray(size)
    page_flags = LEAF_PAGE if is_leaf else BRANCH_PAGE
    _HEADER.pack_into(out, 0, pgid, page_flags, count, overflow)
    data_at = PAGE_HEADER_SIZE + count * ELEMENT_SIZE
    for i in range(count):
        key = keys[i]
        elem_at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE
        pos = data_at - elem_at
        if is_leaf:
            value = values[i]
            _ELEMENT.pack_into(out, elem_at, flags[i], pos, len(key), len(value))
            out[data_at : data_at + len(key)] = key
            data_at += len(key)
            out[data_at : data_at + len(value)] = value
            data_at += len(value)
        else:
            _BRANCH_ELEMENT.pack_into(out, elem_at, pos, len(key), children[i])
            out[data_at : data_at + len(key)] = key
            data_at += len(key)
    return out


def decode_bucket_header(value: bytes) -> tuple[int, int]:
    """(root page id, sequence) of a bucket value; root 0 means inline."""
    return _BUCKET.unpack_from(value, 0)


def encode_bucket_header(root: int, sequence: int) -> bytes:
    return _BUCKET.pack(root, sequence)


def decode_freelist(buf: FileData, offset: int, end: int, pgid: int) -> list[int]:
    """The free page ids of a freelist page (including the 0xFFFF count form)."""
    header = decode_header(buf, offset)
    if header.flags != FREELIST_PAGE:
        raise InvalidDatabase(
            f"page {pgid}: expected a freelist page, found type {header.flags:#x}"
        )
    start = offset + PAGE_HEADER_SIZE
    count = header.count
    if count == 0xFFFF:
        if start + 8 > end:
            raise InvalidDatabase(f"page {pgid}: freelist count lies outside the page")
        (count,) = struct.unpack_from("<Q", buf, start)
        start += 8
    if start + count * 8 > end:
        raise InvalidDatabase(f"page {pgid}: {count} free page ids do not fit in the freelist page")
    return list(struct.unpack_from(f"<{count}Q", buf, start))


def freelist_size(count: int) -> int:
    """Bytes a freelist page of ``count`` ids needs (bbolt's freelist.size)."""
    if count >= 0xFFFF:
        count += 1
    return PAGE_HEADER_SIZE + 8 * count


def encode_freelist(pgid: int, ids: list[int], size: int, overflow: int) -> bytearray:
    out = bytearray(size)
    count = len(ids)
    if count < 0xFFFF:
        _HEADER.pack_into(out, 0, pgid, FREELIST_PAGE, count, overflow)
        struct.pack_into(f"<{count}Q", out, PAGE_HEADER_SIZE, *ids)
    else:
        _HEADER.pack_into(out, 0, pgid, FREELIST_PAGE, 0xFFFF, overflow)
        struct.pack_into(f"<Q{count}Q", out, PAGE_HEADER_SIZE, count, *ids)
    return out
