"""Read and validate a snapshot of a bbolt file (the engine's tx.Check).

Before any transaction, the whole file's structure is checked: both meta
pages, the freelist, every page reachable from the root claimed exactly once
(no cycles, no page both free and in use, nothing past the high-water mark or
the end of the file, every page either reachable or free), the right page
type and id in every header, every branch page decoded (keys ascending and
inside the parent's range), and in every leaf page every element's key and
value inside the page, known flags, keys ascending and inside the parent's
range; nested buckets are followed. Only leaf values are copied lazily, when
a page is first read. The checks are vectorized (array, map, sorted): a
65,000-allocation file is checked in tens of milliseconds.

Below a branch, every page's first key is exactly the key its parent has for
it (bbolt's node.spill puts it there; Go's tx.Check does not look). A write
finds a changed child's element by that key: with any other key, even one in
order, it would add a second element and leave the old page reachable and freed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from itertools import islice
from operator import add, lt

from ipamguard.bolt.page import (
    BRANCH_PAGE,
    BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG,
    ELEMENT_SIZE,
    LEAF_PAGE,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    NO_FREELIST,
    PAGE_HEADER_SIZE,
    FileData,
    Meta,
    Page,
    decode_bucket_header,
    decode_freelist,
    decode_header,
    decode_meta,
    decode_page,
)
from ipamguard.bolt.reuse import Reuse, Walk, page_digests
from ipamguard.bolt.snapshot import Leaf, PageInfo, Path, Snapshot, Validated, element_table
from ipamguard.errors import InvalidDatabase

_META, _FREELIST_PAGE, _FREE, _TREE = 1, 2, 3, 4
_KINDS = {_META: "a meta page", _FREELIST_PAGE: "the freelist", _FREE: "free", _TREE: "in use"}
MAX_DEPTH = 64
MAX_NESTING = 256


def select_meta(data: FileData) -> Meta:
    """The meta in use, picked as bbolt's Open and db.meta() pick it.

    The page size is meta page 0's if it validates (magic, version, checksum); if it does
    not (a torn write), meta page 1 is looked for at every page size. Of the metas that
    validate, the highest txid wins. A meta that validates yet gives a bad page size, or
    another one than meta page 0, or a txid that bbolt writes to the other meta page
    (``txid % 2``), is damage rather than a torn write: refused (bbolt would read the file
    with the wrong page size, or take the other meta's older state; the next commit would
    leave the damaged meta in place).
    """
    if len(data) < 2 * MIN_PAGE_SIZE:
        raise InvalidDatabase(f"file too small to be a bbolt database ({len(data)} bytes)")
    first = decode_meta(data, 0)
    candidates: list[Meta] = []
    reasons: list[str] = []
    if isinstance(first, Meta):
        _check_meta(first, 0, None)
        candidates.append(first)
        sizes = [first.page_size]
    else:
        reasons.append(f"meta page 0: {first}")
        sizes = [s for s in _page_sizes() if 2 * s <= len(data)]
    second: Meta | str = "missing"
    for size in sizes:
        second = decode_meta(data, size)
        if isinstance(second, Meta):
            _check_meta(second, 1, size)
            candidates.append(second)
            break
    else:
        reasons.append(f"meta page 1: {second}")
    if not candidates:
        raise InvalidDatabase("not a valid bbolt database: " + "; ".join(reasons))
    return max(candidates, key=lambda meta: meta.txid)


def _check_meta(meta: Meta, index: int, found_at: int | None) -> None:
    if meta.txid % 2 != index:
        raise InvalidDatabase(
            f"meta page {index}: txid {meta.txid} (its checksum is valid), which bbolt writes "
            f"to meta page {meta.txid % 2}"
        )
    size = meta.page_size
    if not (MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE) or size & (size - 1):
        raise InvalidDatabase(f"meta page {index}: bad page size {size} (its checksum is valid)")
    if found_at is not None and size != found_at:
        raise InvalidDatabase(
            f"meta page {index}: page size {size}, but it lies at byte {found_at} "
            f"(a page size of {found_at})"
        )


def _page_sizes() -> list[int]:
    sizes, size = [], MIN_PAGE_SIZE
    while size <= MAX_PAGE_SIZE:
        sizes.append(size)
        size *= 2
    return sizes


def load_snapshot(data: FileData, previous: Validated | None = None) -> Snapshot:
    """Validate ``data`` in full; ``previous``: a validation of the same file, earlier,
    whose results are reused for every page whose bytes and place in the tree are
    unchanged (the checks of a page are a function of exactly those), and for every
    subtree none of whose pages changed (its pages are only claimed again); all of them
    if no page changed.

    Every whole-file invariant is checked again either way: each page claimed once,
    free or in use, reachable, inside the file and below the high-water mark; only the
    per-page work (decoding, key order and ranges) is skipped for unchanged pages. A
    file that this refuses is validated again without reuse: damage is always judged,
    and worded, by the full validation.
    """
    meta = select_meta(data)
    if previous is not None and previous.meta.page_size == meta.page_size:
        digests = page_digests(data, meta.page_size)
        if digests == previous.page_digests():
            return Snapshot.again(previous, data, digests)
        try:
            snapshot = _Checker(data, meta, Reuse.between(previous, digests)).run()
        except InvalidDatabase:
            pass  # judged below, from scratch
        else:
            snapshot.digests = digests
            return snapshot
    return _Checker(data, meta).run()


class _Checker:
    def __init__(self, data: FileData, meta: Meta, reuse: Reuse | None = None) -> None:
        self.data = data
        self.meta = meta
        self.page_size = meta.page_size
        self.hwm = meta.high_water_mark
        self.owner = bytearray()  # per page: who claims it (allocated once hwm is checked)
        self.info: dict[int, PageInfo] = {}
        self.heads: dict[int, int] = {}
        self.pages: dict[int, Page] = {}
        self.leaves: dict[int, Leaf] = {}
        self.nesting = 0
        self.walk = Walk()
        self.reuse = reuse
        self.reused = 0  # pages whose earlier checks were reused (for tests and benches)
        self.taken = 0  # ... of which with their whole subtree, without a look at them

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
        self.owner = bytearray(hwm)
        self.owner[0] = self.owner[1] = _META
        synced = meta.freelist != NO_FREELIST
        if synced:
            self._check_freelist(meta.freelist)
        self._walk_tree(meta.root, ())
        unclaimed = self.owner.find(0, 2, hwm)
        if synced and unclaimed != -1:
            raise InvalidDatabase(f"page {unclaimed}: neither reachable nor free")
        kinds = (_FREE,) if synced else (_FREE, 0)  # without a freelist, bbolt rebuilds it
        free = [i for i in range(2, hwm) if self.owner[i] in kinds]
        snapshot = Snapshot(self.data, meta, self.info, free)
        snapshot.heads = self.heads
        snapshot.pages = self.pages
        snapshot.leaves = self.leaves
        snapshot.walk = self.walk
        return snapshot

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
            if i != pgid:
                self.heads[i] = pgid

    def _header_at(self, pgid: int, referrer: str) -> tuple[int, int, int, int]:
        """(flags, count, overflow, end offset) of page ``pgid``, after basic checks."""
        if pgid < 2 or pgid >= self.hwm:
            raise InvalidDatabase(f"page {pgid} ({referrer}): outside the file's pages")
        offset = pgid * self.page_size
        header = decode_header(self.data, offset)
        if header.id != pgid:
            raise InvalidDatabase(f"page {pgid} ({referrer}): header says page {header.id}")
        end = offset + (header.overflow + 1) * self.page_size
        if end > len(self.data):
            raise InvalidDatabase(f"page {pgid} ({referrer}): overflow past the end of the file")
        return header.flags, header.count, header.overflow, end

    def _check_freelist(self, pgid: int) -> None:
        _, _, overflow, end = self._header_at(pgid, "freelist")
        self._claim(pgid, overflow, _FREELIST_PAGE, "freelist")
        for free in decode_freelist(self.data, pgid * self.page_size, end, pgid):
            self._claim(free, 0, _FREE, f"listed free in page {pgid}")

    def _walk_tree(self, root: int, bucket: Path) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise InvalidDatabase(f"bucket {bucket!r}: nested deeper than {MAX_NESTING}")
        where = f"bucket {b'/'.join(bucket)!r}" if bucket else "root bucket"
        # (page, the key its parent has for it (None: the bucket's root), the parent's next
        # key (None: no upper bound), depth, who refers to it); depth -1: the walk is past
        # the subtree of the branch page at that index of the walk
        stack: list[tuple[int, bytes | None, bytes | None, int, str]] = [
            (root, None, None, 0, where)
        ]
        walk, reuse = self.walk, self.reuse
        while stack:
            pgid, first, high, depth, referrer = stack.pop()
            if depth < 0:
                walk.close(pgid)
                continue
            if depth > MAX_DEPTH:
                raise InvalidDatabase(f"page {pgid} ({referrer}): tree deeper than {MAX_DEPTH}")
            info = PageInfo(bucket, first, high)
            level = depth << 16 | self.nesting
            if reuse is not None:
                span = reuse.subtree(pgid, info, level)
                if span is not None:
                    self._take_subtree(*span)
                    continue
            flags, count, overflow, end = self._header_at(pgid, referrer)
            self._claim(pgid, overflow, _TREE, referrer)
            self.info[pgid] = info
            index = walk.add(pgid, overflow, level)
            earlier = reuse.page(pgid, overflow, info) if reuse else None
            if earlier is not None:
                self.reused += 1
                children = self._reused(pgid, earlier, bucket, high, depth)
                if children:
                    stack.append((index, None, None, -1, ""))
                    stack += children
                else:
                    walk.close(index)
                continue
            if flags == LEAF_PAGE:
                self._check_leaf(pgid, count, overflow, end, bucket, first, high, referrer)
                walk.close(index)
                continue
            if flags != BRANCH_PAGE:
                raise InvalidDatabase(f"page {pgid} ({referrer}): invalid type {flags:#x}")
            page = decode_page(self.data, pgid * self.page_size, end, pgid)
            self.pages[pgid] = page
            keys = page.keys
            if first is not None and keys[0] != first:
                raise _first_key_mismatch(pgid, referrer, keys[0], first)
            if high is not None and keys[-1] >= high:
                raise InvalidDatabase(f"page {pgid} ({referrer}): keys outside the parent's range")
            highs = islice(keys, 1, None)
            child_of = f"child of page {pgid}"
            stack.append((index, None, None, -1, ""))
            for child, key in zip(page.pgids, keys, strict=True):
                stack.append((child, key, next(highs, high), depth + 1, child_of))
        self.nesting -= 1

    def _take_subtree(self, first: int, end: int) -> None:
        """Take an unchanged subtree (the earlier walk's entries ``first``..``end``):
        its pages are claimed again, everything else is the earlier results."""
        prev = self.reuse.previous if self.reuse else None
        assert prev is not None
        old, walk = prev.walk, self.walk
        owner, hwm = self.owner, self.hwm
        info, leaves, pages = self.info, self.leaves, self.pages
        old_info, old_leaves, old_pages = prev.info, prev.leaves, prev.pages
        at, shift = walk.at, len(walk.pgids) - first
        for i in range(first, end):
            pgid, overflow = old.pgids[i], old.overflow[i]
            if overflow:
                self._claim(pgid, overflow, _TREE, "an unchanged subtree")
            elif pgid < 2 or pgid >= hwm or owner[pgid]:
                raise InvalidDatabase(f"page {pgid}: claimed twice or outside the file")
            else:
                owner[pgid] = _TREE
            info[pgid] = old_info[pgid]
            leaf = old_leaves.get(pgid)
            if leaf is not None:
                leaves[pgid] = leaf
            else:
                pages[pgid] = old_pages[pgid]
            at[pgid] = i + shift
        walk.pgids += old.pgids[first:end]
        walk.overflow += old.overflow[first:end]
        walk.size += old.size[first:end]
        walk.level += old.level[first:end]
        self.reused += end - first
        self.taken += end - first

    def _reused(
        self, pgid: int, earlier: Page | Leaf, bucket: Path, high: bytes | None, depth: int
    ) -> list[tuple[int, bytes | None, bytes | None, int, str]]:
        """Take an unchanged page's earlier results; its children to walk (a branch's
        pages, a leaf's nested buckets: those are walked, and claimed, again)."""
        if isinstance(earlier, Leaf):
            self.leaves[pgid] = earlier
            if earlier.buckets:
                start = pgid * self.page_size + PAGE_HEADER_SIZE
                _, key_at, key_sizes, value_sizes = element_table(self.data, start, earlier.count)
                self._check_nested(pgid, bucket, earlier.buckets, key_at, key_sizes, value_sizes)
            return []
        # a copy: the same branch object stands for a subtree none of whose pages
        # changed (readers' caches rely on it); this one's children are walked again
        self.pages[pgid] = earlier = copy.copy(earlier)
        keys = earlier.keys
        highs = islice(keys, 1, None)
        child_of = f"child of page {pgid}"
        return [
            (child, key, next(highs, high), depth + 1, child_of)
            for child, key in zip(earlier.pgids, keys, strict=True)
        ]

    def _check_leaf(
        self,
        pgid: int,
        count: int,
        overflow: int,
        end: int,
        bucket: Path,
        first: bytes | None,
        high: bytes | None,
        referrer: str,
    ) -> None:
        """Elements inside the page, known flags, keys ascending, the first one the key its
        parent has for the page (``first``; None for a bucket's root), the last below ``high``."""
        start = pgid * self.page_size + PAGE_HEADER_SIZE
        elements_end = start + count * ELEMENT_SIZE
        if elements_end > end:
            raise InvalidDatabase(f"page {pgid}: {count} elements do not fit in the page")
        flags, key_at, key_sizes, value_sizes = element_table(self.data, start, count)
        key_end = list(map(add, key_at, key_sizes))
        if count and (
            min(key_sizes) == 0
            or min(key_at) < elements_end
            or max(map(add, key_end, value_sizes)) > end
        ):
            raise InvalidDatabase(f"page {pgid}: an element lies outside the page")
        if count and max(flags) & ~BUCKET_LEAF_FLAG:
            raise InvalidDatabase(f"page {pgid}: an element has unknown flags")
        data = self.data
        keys = list(map(data.__getitem__, map(slice, key_at, key_end)))
        if not all(map(lt, keys, islice(keys, 1, None))):
            raise InvalidDatabase(f"page {pgid}: keys out of order or repeated")
        if first is not None:
            if not keys:
                raise InvalidDatabase(
                    f"page {pgid} ({referrer}): an empty leaf, yet its parent has the key "
                    f"{_show(first)} for it"
                )
            if keys[0] != first:
                raise _first_key_mismatch(pgid, referrer, keys[0], first)
        if keys and high is not None and keys[-1] >= high:
            raise InvalidDatabase(f"page {pgid}: keys outside the range its parent gives")
        if not count or not max(flags):
            self.leaves[pgid] = Leaf(overflow, count, ())
            return
        buckets = tuple(i for i, flag in enumerate(flags) if flag)
        self.leaves[pgid] = Leaf(overflow, count, buckets)
        self._check_nested(pgid, bucket, buckets, key_at, key_sizes, value_sizes)

    def _check_nested(
        self,
        pgid: int,
        bucket: Path,
        buckets: Iterable[int],
        key_at: Sequence[int],
        key_sizes: Sequence[int],
        value_sizes: Sequence[int],
    ) -> None:
        """The bucket headers of leaf ``pgid``'s elements ``buckets`` (nested buckets)."""
        data = self.data
        for i in buckets:
            key_end = key_at[i] + key_sizes[i]
            value = data[key_end : key_end + value_sizes[i]]
            self.check_bucket_value(value, (*bucket, data[key_at[i] : key_end]), f"page {pgid}")

    def check_bucket_value(self, value: bytes, bucket: Path, where: str) -> None:
        name = bucket[-1]
        if len(value) < BUCKET_HEADER_SIZE:
            raise InvalidDatabase(f"{where}: bucket {name!r} has a short header")
        root, _ = decode_bucket_header(value)
        if root != 0:
            self._walk_tree(root, bucket)
            return
        if len(value) < BUCKET_HEADER_SIZE + PAGE_HEADER_SIZE:
            raise InvalidDatabase(f"{where}: inline bucket {name!r} has no page")
        try:
            inline = decode_page(value, BUCKET_HEADER_SIZE, len(value), 0)
        except InvalidDatabase as error:
            raise InvalidDatabase(f"{where}: inline bucket {name!r}: {error}") from None
        if not inline.is_leaf:
            raise InvalidDatabase(f"{where}: inline bucket {name!r} is not a leaf")
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise InvalidDatabase(f"bucket {name!r}: nested deeper than {MAX_NESTING}")
        for key, child, flag in zip(inline.keys, inline.values, inline.flags, strict=True):
            if flag & BUCKET_LEAF_FLAG:
                self.check_bucket_value(child, (*bucket, key), f"inline bucket {name!r}")
        self.nesting -= 1


def _first_key_mismatch(pgid: int, referrer: str, key: bytes, expected: bytes) -> InvalidDatabase:
    """bbolt's invariant: a branch element's key is its child page's first key (node.spill
    puts it there); a delete finds a child's element by that key, so a mismatch would
    leave a freed page reachable."""
    return InvalidDatabase(
        f"page {pgid} ({referrer}): first key {_show(key)} is not the key {_show(expected)} "
        "that its parent has for it"
    )


def _show(key: bytes) -> str:
    """A key in hex, shortened past 32 bytes."""
    return key.hex() if len(key) <= 32 else f"{key[:32].hex()}..({len(key)} bytes)"


def decode_inline_page(value: bytes) -> Page:
    """The inline page of a bucket value already accepted by the checker."""
    return decode_page(value, BUCKET_HEADER_SIZE, len(value), 0)
