"""Transactions over a validated snapshot (bbolt's tx.go).

A read transaction walks the snapshot's pages. A write transaction changes
nodes in memory; ``prepare_commit`` then runs bbolt's commit algorithm without
touching the file: rebalance, spill (copy on write into free or new pages), a
new freelist, and the new meta for page ``txid % 2``. The DB writes the
resulting plan under the file lock, data pages first, then the meta.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from ipamguard.bolt.bucket import Bucket
from ipamguard.bolt.check import decode_inline_page
from ipamguard.bolt.freelist import Freelist
from ipamguard.bolt.page import NO_FREELIST, Page, decode_header, encode_freelist, freelist_size
from ipamguard.bolt.search import search_snapshot
from ipamguard.bolt.snapshot import Path, Snapshot
from ipamguard.errors import InvalidDatabase, TxClosed, TxNotWritable

MAX_TXID = (1 << 64) - 1


@dataclass
class CommitPlan:
    """What a commit writes: data pages (sorted by offset), then the meta page."""

    pages: list[tuple[int, bytes]]  # (file offset, bytes)
    meta_offset: int
    meta_page: bytes
    txid: int


class Tx:
    """A read or write transaction; a write tx is a change set over its snapshot."""

    def __init__(self, snapshot: Snapshot, writable: bool) -> None:
        self.snapshot = snapshot
        self.writable = writable
        self.meta = copy.copy(snapshot.meta)
        self.page_size = self.meta.page_size
        self.closed = False
        self.freelist = Freelist(snapshot.free) if writable else None
        self.dirty: dict[int, bytes | bytearray] = {}
        if writable:
            if self.meta.txid >= MAX_TXID:  # bbolt's uint64 would wrap to 0
                raise InvalidDatabase(f"meta: txid {self.meta.txid} cannot be followed by another")
            self.meta.txid += 1
        # buckets refer to their tx weakly: a tx and its buckets would otherwise form a
        # cycle that keeps the snapshot (the whole file) alive until the cycle collector
        # happens to run; the daemon would hold one old copy of ipam.db per cycle
        self.root = Bucket(weakref.proxy(self), self.meta.root, self.meta.sequence)

    @property
    def txid(self) -> int:
        return self.meta.txid

    def check_open(self) -> None:
        if self.closed:
            raise TxClosed("transaction closed")

    def check_writable(self) -> None:
        self.check_open()
        if not self.writable:
            raise TxNotWritable("transaction is read-only")

    # --- buckets at the top level ---------------------------------------------

    def bucket(self, name: bytes) -> Bucket | None:
        return self.root.bucket(name)

    def create_bucket(self, name: bytes) -> Bucket:
        return self.root.create_bucket(name)

    def create_bucket_if_not_exists(self, name: bytes) -> Bucket:
        return self.root.create_bucket_if_not_exists(name)

    def delete_bucket(self, name: bytes) -> None:
        self.root.delete_bucket(name)

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Top-level names (all buckets in a valid file), with None values."""
        return self.root.items()

    # --- pages ------------------------------------------------------------------

    def page(self, pgid: int) -> Page:
        return self.snapshot.page(pgid)

    def search(self, needle: bytes) -> Iterator[tuple[Path, bytes, bytes]]:
        """(bucket path, key, value) of every value element whose key or value contains
        ``needle``, in any bucket, as of the start of this transaction; fast (a byte
        search over the file, then only the pages that hold it are decoded)."""
        return search_snapshot(self.snapshot, needle)

    def inline_page(self, value: bytes) -> Page:
        return decode_inline_page(value)

    def allocate(self, count: int) -> int:
        """``count`` contiguous pages: from the freelist, else past the high-water mark."""
        assert self.freelist is not None
        pgid = self.freelist.allocate(count)
        if pgid == 0:
            pgid = self.meta.high_water_mark
            self.meta.high_water_mark += count
        return pgid

    def free_page(self, pgid: int) -> None:
        assert self.freelist is not None
        header = decode_header(self.snapshot.data, pgid * self.page_size)
        self.freelist.free(pgid, header.overflow)

    def write_page(self, pgid: int, data: bytes | bytearray) -> None:
        self.dirty[pgid] = data

    # --- commit -------------------------------------------------------------------

    def prepare_commit(self) -> CommitPlan:
        """bbolt's Commit up to the writes: rebalance, spill, freelist, meta."""
        self.check_writable()
        assert self.freelist is not None
        self.root.rebalance()
        self.root.spill()
        self.meta.root = self.root.root
        if self.meta.freelist != NO_FREELIST:
            self.free_page(self.meta.freelist)
        count = freelist_size(self.freelist.count()) // self.page_size + 1
        pgid = self.allocate(count)
        ids = self.freelist.all_ids()
        self.write_page(pgid, encode_freelist(pgid, ids, count * self.page_size, count - 1))
        self.meta.freelist = pgid
        if self.meta.root >= self.meta.high_water_mark:
            raise AssertionError("root bucket page above the high-water mark")
        pages = [(p * self.page_size, bytes(data)) for p, data in sorted(self.dirty.items())]
        meta_page = self.meta.encode_page()
        self.closed = True
        return CommitPlan(pages, (self.meta.txid % 2) * self.page_size, meta_page, self.meta.txid)

    def rollback(self) -> None:
        self.closed = True
