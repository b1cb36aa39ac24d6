"""What a validation can take from an earlier one of the same file (see check.py).

bbolt copies on write: a commit writes a few new pages and a meta, and leaves every
page reachable from the old meta untouched. The pages whose bytes changed are found by
comparing each page's digest with its digest in the earlier copy; a page whose bytes and
place in the tree are unchanged passed the same checks before, and so did a subtree none
of whose pages changed.

The earlier copy itself is not kept, only its digests (XXH3, 128 bits: 16 bytes a page,
100 kB for a 65,000-allocation file of 25 MB). An accidental collision, a changed page
with its old digest, has a chance of 2**-128; XXH3 is not a cryptographic hash, and it
needs none: whoever can write ipam.db is root already. Digesting a 25 MB file takes
about 6 ms, as long as comparing two copies did.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xxhash import xxh3_128_digest

if TYPE_CHECKING:
    from ipamguard.bolt.page import FileData, Page
    from ipamguard.bolt.snapshot import Leaf, PageInfo, Validated


CHUNK_PAGES = 32  # pages compared at once before looking closer
DIGEST_SIZE = 16


def page_digests(data: FileData, page_size: int) -> bytes:
    """The digest of each whole page of ``data``, in page order, as one string."""
    view = memoryview(data)
    ends = range(page_size, len(data) + 1, page_size)
    return b"".join([xxh3_128_digest(view[end - page_size : end]) for end in ends])


def changed_pages(old: bytes, new: bytes) -> set[int]:
    """Ids of the pages whose digests (``page_digests``) differ between two versions of
    a file; pages past the shorter one's whole pages count as changed."""
    size = DIGEST_SIZE
    pages = max(len(old), len(new)) // size + 1  # a part page at the end: changed too
    common = min(len(old), len(new)) // size
    changed = set(range(common, pages))
    chunk = CHUNK_PAGES * size
    for start in range(0, common * size, chunk):
        end = min(start + chunk, common * size)
        if old[start:end] == new[start:end]:
            continue
        for offset in range(start, end, size):
            if old[offset : offset + size] != new[offset : offset + size]:
                changed.add(offset // size)
    return changed


class Walk:
    """The tree pages of a snapshot in the order the checker walked them (depth first,
    a page before its children and a leaf before the buckets nested in it): a page's
    subtree is the ``size`` entries from its own."""

    def __init__(self) -> None:
        self.pgids = array("q")
        self.overflow = array("q")
        self.size = array("q")  # pages in the subtree, the page itself included
        self.level = array("q")  # depth << 16 | bucket nesting, where the page was met
        self.at: dict[int, int] = {}  # page id -> its index

    def add(self, pgid: int, overflow: int, level: int) -> int:
        index = len(self.pgids)
        self.at[pgid] = index
        self.pgids.append(pgid)
        self.overflow.append(overflow)
        self.size.append(1)
        self.level.append(level)
        return index

    def close(self, index: int) -> None:
        self.size[index] = len(self.pgids) - index


@dataclass(frozen=True, slots=True)
class Reuse:
    """What an earlier validation of the same file found, and which pages changed."""

    previous: Validated
    changed: set[int]
    dirty: list[int]  # sorted indexes, in the earlier walk, of the pages that changed

    @classmethod
    def between(cls, previous: Validated, digests: bytes) -> Reuse:
        """``digests``: the new version's ``page_digests``."""
        return cls.of(previous, changed_pages(previous.page_digests(), digests))

    @classmethod
    def of(cls, previous: Validated, changed: set[int]) -> Reuse:
        heads, at = previous.heads, previous.walk.at
        dirty = sorted(at[h] for h in (heads.get(p, p) for p in changed) if h in at)
        return cls(previous, changed, dirty)

    def page(self, pgid: int, overflow: int, info: PageInfo) -> Page | Leaf | None:
        """The earlier result for this page, if its bytes and its place are the same."""
        prev = self.previous
        if prev.info.get(pgid) != info or pgid + overflow >= prev.meta.high_water_mark:
            return None
        if any(p in self.changed for p in range(pgid, pgid + overflow + 1)):
            return None
        leaf = prev.leaves.get(pgid)
        if leaf is not None:
            return leaf if leaf.overflow == overflow else None
        page = prev.pages.get(pgid)
        return page if page is not None and page.overflow == overflow else None

    def subtree(self, pgid: int, info: PageInfo, level: int) -> tuple[int, int] | None:
        """(first, end) indexes in the earlier walk of the subtree of ``pgid``, if none
        of its pages changed and ``pgid`` sits where it sat (same bucket, key range,
        depth and nesting: then every page below sits where it sat too)."""
        prev = self.previous
        index = prev.walk.at.get(pgid)
        if index is None or prev.walk.level[index] != level or prev.info[pgid] != info:
            return None
        end = index + prev.walk.size[index]
        dirty = self.dirty
        i = bisect_left(dirty, index)
        if i < len(dirty) and dirty[i] < end:
            return None
        return index, end
