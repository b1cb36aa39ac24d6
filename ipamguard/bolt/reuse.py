"""What a validation can take from an earlier one of the same file (see check.py).

bbolt copies on write: a commit writes a few new pages and a meta, and leaves every
page reachable from the old meta untouched. The pages whose bytes changed are found by
comparing the two copies; a page whose bytes and place in the tree are unchanged passed
the same checks before, and so did a subtree none of whose pages changed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipamguard.bolt.check import Leaf, PageInfo, Snapshot
    from ipamguard.bolt.page import Page


CHUNK_PAGES = 32  # pages compared at once before looking closer


def changed_pages(old: bytes, new: bytes, page_size: int) -> set[int]:
    """Ids of the pages whose bytes differ between two versions of a file (pages past
    the shorter one's end count as changed)."""
    pages = max(len(old), len(new)) // page_size + 1
    common = min(len(old), len(new)) // page_size
    changed = set(range(common, pages))
    chunk = CHUNK_PAGES * page_size
    for start in range(0, common * page_size, chunk):
        end = min(start + chunk, common * page_size)
        if old[start:end] == new[start:end]:
            continue
        for offset in range(start, end, page_size):
            if old[offset : offset + page_size] != new[offset : offset + page_size]:
                changed.add(offset // page_size)
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

    previous: Snapshot
    changed: set[int]
    dirty: list[int]  # sorted indexes, in the earlier walk, of the pages that changed

    @classmethod
    def between(cls, previous: Snapshot, data: bytes) -> Reuse:
        return cls.of(previous, changed_pages(previous.data, data, previous.meta.page_size))

    @classmethod
    def of(cls, previous: Snapshot, changed: set[int]) -> Reuse:
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
