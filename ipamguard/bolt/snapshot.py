"""A validated copy of a bbolt file, and what a validation keeps for the next one.

check.py validates; these are its results: ``Snapshot`` (the file's bytes as of one
committed meta, every reachable page's place, the free pages, the checked leaves) and
``Validated`` (the same without the bytes, kept between reads of the same file: each
page's digest instead). Leaf pages are decoded lazily, when read.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from operator import add

from ipamguard.bolt.page import ELEMENT_SIZE, PAGE_HEADER_SIZE, FileData, Meta, Page
from ipamguard.bolt.reuse import Walk, page_digests
from ipamguard.errors import InvalidDatabase

Path = tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PageInfo:
    """Where a reachable page sits: its bucket and the key range its parent allows."""

    bucket: Path
    low: bytes | None
    high: bytes | None


class Validated:
    """What a validation of a file found, without the file's bytes: what the next
    validation of the same file takes over for the pages that did not change. Kept
    between reads; the bytes are not (25 MB at 65,000 allocations), their pages'
    digests are (reuse.page_digests: 100 kB)."""

    def __init__(
        self, meta: Meta, info: dict[int, PageInfo], free: list[int], digests: bytes | None
    ) -> None:
        self.meta = meta
        self.info = info  # every reachable branch/leaf page (not inline ones)
        self.free = free  # free page ids, sorted
        self.digests = digests
        self.heads: dict[int, int] = {}  # overflow page -> the page it continues
        self.pages: dict[int, Page] = {}  # decoded pages (all branches; leaves when read)
        self.leaves: dict[int, Leaf] = {}  # checked leaves, values not copied yet
        self.walk = Walk()  # the tree pages in the order they were checked

    def page_digests(self) -> bytes:
        if self.digests is None:
            raise AssertionError("a validation kept without its pages' digests")
        return self.digests

    def _share(self, other: Validated) -> None:
        # pages: a copy, which leaves decoded later by readers of one do not enter
        other.heads, other.pages, other.leaves, other.walk = (
            self.heads, dict(self.pages), self.leaves, self.walk
        )  # fmt: skip


class Snapshot(Validated):
    """A validated copy of the whole file, as of one committed meta."""

    def __init__(
        self,
        data: FileData,
        meta: Meta,
        info: dict[int, PageInfo],
        free: list[int],
        digests: bytes | None = None,
    ) -> None:
        super().__init__(meta, info, free, digests)
        self.data = data

    def page_digests(self) -> bytes:
        if self.digests is None:
            self.digests = page_digests(self.data, self.meta.page_size)
        return self.digests

    def kept(self) -> Validated:
        """What the next validation of the same file needs of this one."""
        kept = Validated(self.meta, self.info, self.free, self.page_digests())
        self._share(kept)
        return kept

    @classmethod
    def again(cls, earlier: Validated, data: FileData, digests: bytes) -> Snapshot:
        """``data``, whose pages are byte for byte those ``earlier`` validated."""
        snapshot = cls(data, earlier.meta, earlier.info, earlier.free, digests)
        earlier._share(snapshot)
        return snapshot

    def page(self, pgid: int) -> Page:
        """The decoded page ``pgid`` (a reachable branch or leaf page)."""
        page = self.pages.get(pgid)
        if page is None:
            page = self.pages[pgid] = self._decoded_leaf(pgid)
        return page

    def decode_leaf(self, pgid: int) -> Page:
        """The checked leaf ``pgid`` decoded, not kept: a reader that takes what it needs
        from it (the IPAM model) leaves no copy of its keys and values behind, whose holes
        would scatter the heap between the objects it keeps."""
        page = self.pages.get(pgid)
        return page if page is not None else self._decoded_leaf(pgid)

    def _decoded_leaf(self, pgid: int) -> Page:
        leaf = self.leaves.get(pgid)
        if leaf is None:
            raise InvalidDatabase(f"page {pgid}: not a reachable branch or leaf page")
        page = Page(pgid, True, leaf.overflow)
        data = self.data
        start = pgid * self.meta.page_size + PAGE_HEADER_SIZE
        flags, key_at, key_sizes, value_sizes = element_table(data, start, leaf.count)
        key_end = list(map(add, key_at, key_sizes))
        page.keys = list(map(data.__getitem__, map(slice, key_at, key_end)))
        page.flags = flags.tolist()
        value_end = map(add, key_end, value_sizes)
        page.values = list(map(data.__getitem__, map(slice, key_end, value_end)))
        return page


@dataclass(slots=True)
class Leaf:
    """A checked leaf page. Its keys and values are sliced from the file's bytes when the
    page is read, through its element table, read again then too: those are the bytes
    that were checked (the same page, the same digest). A 65,000-allocation file keeps
    6,000 of these, where the element tables as arrays took 4 MB."""

    overflow: int
    count: int  # elements
    buckets: tuple[int, ...]  # the elements that are nested buckets (flag set)


def element_table(
    data: FileData, start: int, count: int
) -> tuple[array[int], list[int], array[int], array[int]]:
    """(flags, file offset of each key, key sizes, value sizes) of the ``count`` leaf
    elements at ``start`` (each value follows its key)."""
    table = array("I")
    table.frombytes(data[start : start + count * ELEMENT_SIZE])
    if sys.byteorder == "big":
        table.byteswap()
    key_at = list(map(add, range(start, start + count * ELEMENT_SIZE, ELEMENT_SIZE), table[1::4]))
    return table[0::4], key_at, table[2::4], table[3::4]
