"""bbolt's array freelist: free page ids, and the pages this transaction frees.

Pages freed by the running transaction stay "pending": they are still reachable
from the committed meta, so they are written as free in the new freelist but
never handed out again before that meta is replaced (crash safety).
"""

from __future__ import annotations

from collections.abc import Iterable


class Freelist:
    __slots__ = ("_all", "ids", "pending")

    def __init__(self, ids: Iterable[int]) -> None:
        self.ids: list[int] = sorted(ids)
        self.pending: list[int] = []
        self._all: set[int] = set(self.ids)

    def count(self) -> int:
        return len(self.ids) + len(self.pending)

    def allocate(self, n: int) -> int:
        """First id of ``n`` contiguous free pages, removed from the list; 0 if none."""
        ids = self.ids
        initial = previous = 0
        for i, pgid in enumerate(ids):
            if previous == 0 or pgid - previous != 1:
                initial = pgid
            if pgid - initial + 1 == n:
                del ids[i - n + 1 : i + 1]
                for taken in range(initial, initial + n):
                    self._all.discard(taken)
                return initial
            previous = pgid
        return 0

    def free(self, pgid: int, overflow: int) -> None:
        """Mark page ``pgid`` and its overflow pages as freed by this transaction."""
        if pgid <= 1:
            raise AssertionError(f"cannot free page 0 or 1: {pgid}")
        for freed in range(pgid, pgid + overflow + 1):
            if freed in self._all:
                raise AssertionError(f"page {freed} already freed")
            self._all.add(freed)
            self.pending.append(freed)

    def is_free(self, pgid: int) -> bool:
        return pgid in self._all

    def all_ids(self) -> list[int]:
        """Every id to write into the new freelist page, sorted."""
        return sorted(self.ids + self.pending)  # two sorted runs: timsort merges them
