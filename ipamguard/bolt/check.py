"""Read and fully validate a snapshot of a bbolt file (the engine's tx.Check).

Nothing is written to a file that this module did not first accept whole: the
meta pages, the freelist, and every page reachable from the root, each page
claimed once (no cycles, no page both free and in use, nothing past the
high-water mark or the end of the file), every element inside its page, keys
ascending within and across pages, every page either reachable or free.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipamguard.bolt.page import (
    BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    NO_FREELIST,
    PAGE_HEADER_SIZE,
    Meta,
    Page,
    decode_bucket_header,
    decode_freelist,
    decode_header,
    decode_meta,
    decode_page,
)
from ipamguard.errors import InvalidDatabase

_META, _FREELIST_PAGE, _FREE, _TREE = 1, 2, 3, 4
_KINDS = {_META: "a meta page", _FREELIST_PAGE: "the freelist page", _FREE: "free", _TREE: "in use"}
MAX_DEPTH = 64
MAX_NESTING = 256


@dataclass
class Snapshot:
    """A validated copy of the whole file, as of one committed meta."""

    data: bytes
    meta: Meta
    pages: dict[int, Page]  # every reachable branch and leaf page, by id
    free: list[int]  # free page ids (sorted)


def select_meta(data: bytes) -> Meta:
    """The valid meta with the highest txid (bbolt's db.meta())."""
    if len(data) < 2 * MIN_PAGE_SIZE:
        raise InvalidDatabase(f"file too small to be a bbolt database ({len(data)} bytes)")
    first = decode_meta(data, 0)
    candidates: list[Meta] = []
    reasons: list[str] = []
    if isinstance(first, Meta):
        candidates.append(first)
        sizes = [first.page_size]
    else:
        reasons.append(f"meta page 0: {first}")
        sizes = [s for s in _page_sizes() if 2 * s <= len(data)]
    for size in sizes:
        second = decode_meta(data, size)
        if isinstance(second, Meta) and second.page_size == size:
            candidates.append(second)
            break
    else:
        reasons.append("meta page 1: " + (second if isinstance(second, str) else "bad page size"))
    if not candidates:
        raise InvalidDatabase("not a valid bbolt database: " + "; ".join(reasons))
    return max(candidates, key=lambda meta: meta.txid)


def _page_sizes() -> list[int]:
    sizes, size = [], MIN_PAGE_SIZE
    while size <= MAX_PAGE_SIZE:
        sizes.append(size)
        size *= 2
    return sizes


def load_snapshot(data: bytes) -> Snapshot:
    meta = select_meta(data)
    return _Checker(data, meta).run()


class _Checker:
    def __init__(self, data: bytes, meta: Meta) -> None:
        self.data = data
        self.meta = meta
        self.page_size = meta.page_size
        self.hwm = meta.high_water_mark
        self.owner = bytearray(max(self.hwm, 2))
        self.pages: dict[int, Page] = {}
        self.nesting = 0

    def run(self) -> Snapshot:
        meta, hwm = self.meta, self.hwm
        file_pages = len(self.data) // self.page_size
        if hwm < 3:
            raise InvalidDatabase(f"meta: high-water mark {hwm} is too small")
        if hwm > file_pages:
            raise InvalidDatabase(
                f"file truncated: the meta (txid {meta.txid}) needs {hwm} pages of "
                f"{self.page_size} bytes, the file holds {file_pages}"
            )
        self.owner[0] = self.owner[1] = _META
        synced = meta.freelist != NO_FREELIST
        if synced:
            self._check_freelist(meta.freelist)
        self._walk_bucket(meta.root, b"", None)
        free = [i for i in range(2, hwm) if self.owner[i] == _FREE]
        unclaimed = [i for i in range(2, hwm) if self.owner[i] == 0]
        if synced and unclaimed:
            raise InvalidDatabase(
                f"page {unclaimed[0]}: neither reachable nor free ({len(unclaimed)} such pages)"
            )
        if not synced:
            free = sorted(free + unclaimed)  # bbolt rebuilds the freelist this way
        return Snapshot(self.data, meta, self.pages, free)

    def _claim(self, pgid: int, overflow: int, kind: int, referrer: str) -> None:
        if pgid < 2 or pgid + overflow >= self.hwm:
            raise InvalidDatabase(
                f"page {pgid}{f'+{overflow}' if overflow else ''} ({referrer}): outside the "
                f"file's pages 2..{self.hwm - 1}"
            )
        for i in range(pgid, pgid + overflow + 1):
            if self.owner[i]:
                raise InvalidDatabase(
                    f"page {i} ({referrer}): would be {_KINDS[kind]} but is already "
                    f"{_KINDS[self.owner[i]]}"
                )
            self.owner[i] = kind

    def _header_at(self, pgid: int, referrer: str) -> tuple[int, int]:
        if pgid < 2 or pgid >= self.hwm:
            raise InvalidDatabase(f"page {pgid} ({referrer}): outside the file's pages")
        offset = pgid * self.page_size
        header = decode_header(self.data, offset)
        if header.id != pgid:
            raise InvalidDatabase(f"page {pgid} ({referrer}): header says page {header.id}")
        end = offset + (header.overflow + 1) * self.page_size
        if end > len(self.data):
            raise InvalidDatabase(f"page {pgid} ({referrer}): overflow past the end of the file")
        return header.overflow, end

    def _check_freelist(self, pgid: int) -> None:
        overflow, end = self._header_at(pgid, "freelist")
        self._claim(pgid, overflow, _FREELIST_PAGE, "freelist")
        for free in decode_freelist(self.data, pgid * self.page_size, end, pgid):
            self._claim(free, 0, _FREE, f"listed free in page {pgid}")

    def _walk_bucket(self, root: int, name: bytes, inline: Page | None) -> None:
        """Check one bucket's tree; ``name`` is for messages only."""
        where = f"bucket {name!r}" if name else "root bucket"
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise InvalidDatabase(f"{where}: buckets nested deeper than {MAX_NESTING}")
        try:
            if inline is not None:
                self._check_leaf_buckets(inline, f"inline {where}")
            else:
                self._walk_tree(root, where)
        finally:
            self.nesting -= 1

    def _walk_tree(self, root: int, where: str) -> None:
        # (page id, lower bound, upper bound, depth, referrer)
        stack: list[tuple[int, bytes | None, bytes | None, int, str]] = [
            (root, None, None, 0, where)
        ]
        while stack:
            pgid, low, high, depth, referrer = stack.pop()
            if depth > MAX_DEPTH:
                raise InvalidDatabase(f"page {pgid} ({referrer}): tree deeper than {MAX_DEPTH}")
            overflow, end = self._header_at(pgid, referrer)
            self._claim(pgid, overflow, _TREE, referrer)
            page = decode_page(self.data, pgid * self.page_size, end, pgid)
            keys = page.keys
            if keys and (
                (low is not None and keys[0] < low) or (high is not None and keys[-1] >= high)
            ):
                raise InvalidDatabase(f"page {pgid} ({referrer}): keys outside the parent's range")
            self.pages[pgid] = page
            if page.is_leaf:
                self._check_leaf_buckets(page, f"page {pgid}")
                continue
            for i, child in enumerate(page.pgids):
                child_low = keys[i] if i else low
                child_high = keys[i + 1] if i + 1 < len(keys) else high
                stack.append((child, child_low, child_high, depth + 1, f"child of page {pgid}"))

    def _check_leaf_buckets(self, page: Page, where: str) -> None:
        for key, value, flag in zip(page.keys, page.values, page.flags, strict=True):
            if not flag & BUCKET_LEAF_FLAG:
                continue
            if len(value) < BUCKET_HEADER_SIZE:
                raise InvalidDatabase(f"{where}: bucket {key!r} has a short header")
            root, _ = decode_bucket_header(value)
            if root != 0:
                self._walk_bucket(root, key, None)
                continue
            if len(value) < BUCKET_HEADER_SIZE + PAGE_HEADER_SIZE:
                raise InvalidDatabase(f"{where}: inline bucket {key!r} has no page")
            try:
                inline = decode_page(value, BUCKET_HEADER_SIZE, len(value), 0)
            except InvalidDatabase as error:
                raise InvalidDatabase(f"{where}: inline bucket {key!r}: {error}") from None
            if not inline.is_leaf:
                raise InvalidDatabase(f"{where}: inline bucket {key!r} is not a leaf")
            self._walk_bucket(0, key, inline)


def decode_inline_page(value: bytes) -> Page:
    """The inline page of a bucket value already accepted by the checker."""
    return decode_page(value, BUCKET_HEADER_SIZE, len(value), 0)
