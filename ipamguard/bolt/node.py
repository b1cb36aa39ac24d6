"""An in-memory, changeable copy of a page (bbolt's node.go).

A write transaction turns the pages it changes into nodes. At commit, nodes
that got too small are merged into a sibling (``rebalance``), then every node
is split to fit a page and written to newly allocated pages (``spill``): copy
on write, the old pages are freed.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from ipamguard.bolt.page import ELEMENT_SIZE, PAGE_HEADER_SIZE, Page, encode_page

if TYPE_CHECKING:
    from ipamguard.bolt.bucket import Bucket

MIN_KEYS_PER_PAGE = 2


class Node:
    __slots__ = (
        "bucket",
        "child_nodes",
        "flags",
        "is_leaf",
        "key",
        "keys",
        "parent",
        "pgid",
        "pgids",
        "spilled",
        "unbalanced",
        "values",
    )

    def __init__(self, bucket: Bucket, is_leaf: bool, parent: Node | None = None) -> None:
        self.bucket = bucket
        self.is_leaf = is_leaf
        self.parent = parent
        self.unbalanced = False
        self.spilled = False
        self.key: bytes | None = None  # first key when read: how the parent knows us
        self.pgid = 0
        self.child_nodes: list[Node] = []
        # parallel lists, one entry per element
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.flags: list[int] = []
        self.pgids: list[int] = []

    def read(self, page: Page) -> None:
        self.pgid = page.id
        self.is_leaf = page.is_leaf
        count = len(page.keys)
        self.keys = list(page.keys)
        if page.is_leaf:
            self.values, self.flags, self.pgids = list(page.values), list(page.flags), [0] * count
        else:
            self.values, self.flags, self.pgids = [b""] * count, [0] * count, list(page.pgids)
        self.key = self.keys[0] if count else None

    def min_keys(self) -> int:
        return 1 if self.is_leaf else 2

    def size(self) -> int:
        size = PAGE_HEADER_SIZE + ELEMENT_SIZE * len(self.keys) + sum(map(len, self.keys))
        return size + sum(map(len, self.values)) if self.is_leaf else size

    def child_at(self, index: int) -> Node:
        if self.is_leaf:
            raise AssertionError(f"child_at({index}) on a leaf node")
        return self.bucket.node(self.pgids[index], self)

    def child_index(self, child: Node) -> int:
        assert child.key is not None
        return bisect_left(self.keys, child.key)

    def next_sibling(self) -> Node | None:
        if self.parent is None:
            return None
        index = self.parent.child_index(self)
        if index >= len(self.parent.keys) - 1:
            return None
        return self.parent.child_at(index + 1)

    def prev_sibling(self) -> Node | None:
        if self.parent is None:
            return None
        index = self.parent.child_index(self)
        return None if index == 0 else self.parent.child_at(index - 1)

    def put(self, old_key: bytes, new_key: bytes, value: bytes, pgid: int, flags: int) -> None:
        """Insert or replace the element found at ``old_key``."""
        if not old_key or not new_key:
            raise AssertionError("put: zero-length key")
        keys = self.keys
        index = bisect_left(keys, old_key)
        if index < len(keys) and keys[index] == old_key:
            keys[index] = new_key
            self.values[index], self.flags[index], self.pgids[index] = value, flags, pgid
        else:
            keys.insert(index, new_key)
            self.values.insert(index, value)
            self.flags.insert(index, flags)
            self.pgids.insert(index, pgid)

    def delete(self, key: bytes) -> None:
        keys = self.keys
        index = bisect_left(keys, key)
        if index >= len(keys) or keys[index] != key:
            return
        del keys[index], self.values[index], self.flags[index], self.pgids[index]
        self.unbalanced = True

    def encode(self, pgid: int, size: int, overflow: int = 0) -> bytearray:
        return encode_page(
            pgid, self.is_leaf, self.keys, self.values, self.flags, self.pgids, size, overflow
        )

    # --- commit: split and spill --------------------------------------------

    def split(self, page_size: int) -> list[Node]:
        nodes = []
        node: Node | None = self
        while node is not None:
            first, node = node._split_two(page_size)
            nodes.append(first)
        return nodes

    def _split_two(self, page_size: int) -> tuple[Node, Node | None]:
        if len(self.keys) <= MIN_KEYS_PER_PAGE * 2 or self.size() < page_size:
            return self, None
        threshold = int(page_size * self.bucket.fill_percent)
        index = self._split_index(threshold)
        if self.parent is None:
            self.parent = Node(self.bucket, is_leaf=False)
            self.parent.child_nodes.append(self)
        following = Node(self.bucket, self.is_leaf, self.parent)
        self.parent.child_nodes.append(following)
        following.keys, self.keys = self.keys[index:], self.keys[:index]
        following.values, self.values = self.values[index:], self.values[:index]
        following.flags, self.flags = self.flags[index:], self.flags[:index]
        following.pgids, self.pgids = self.pgids[index:], self.pgids[:index]
        return self, following

    def _split_index(self, threshold: int) -> int:
        size = PAGE_HEADER_SIZE
        index = 0
        values = self.values if self.is_leaf else None
        for i in range(len(self.keys) - MIN_KEYS_PER_PAGE):
            index = i
            element = ELEMENT_SIZE + len(self.keys[i]) + (len(values[i]) if values else 0)
            if i >= MIN_KEYS_PER_PAGE and size + element > threshold:
                break
            size += element
        return index

    def spill(self) -> None:
        """Write this node and its children to new pages (bbolt's node.spill)."""
        if self.spilled:
            return
        tx = self.bucket.tx
        self.child_nodes.sort(key=lambda child: child.keys[0])
        i = 0
        while i < len(self.child_nodes):  # a child's split may add siblings
            self.child_nodes[i].spill()
            i += 1
        self.child_nodes = []
        page_size = tx.page_size
        for node in self.split(page_size):
            if node.pgid > 0:
                tx.free_page(node.pgid)
                node.pgid = 0
            count = (node.size() + page_size - 1) // page_size
            node.pgid = tx.allocate(count)
            tx.write_page(node.pgid, node.encode(node.pgid, count * page_size, count - 1))
            node.spilled = True
            if node.parent is not None:
                key = node.key if node.key is not None else node.keys[0]
                node.parent.put(key, node.keys[0], b"", node.pgid, 0)
                node.key = node.keys[0]
        if self.parent is not None and self.parent.pgid == 0:
            self.child_nodes = []
            self.parent.spill()

    # --- commit: rebalance --------------------------------------------------

    def rebalance(self) -> None:
        """Merge this node into a sibling if it is under 25% full or has too few keys."""
        if not self.unbalanced:
            return
        self.unbalanced = False
        bucket = self.bucket
        if self.size() > bucket.tx.page_size // 4 and len(self.keys) > self.min_keys():
            return
        parent = self.parent
        if parent is None:
            if not self.is_leaf and len(self.keys) == 1:
                self._collapse_into_root()
            return
        if not self.keys:
            assert self.key is not None
            parent.delete(self.key)
            parent.remove_child(self)
            bucket.nodes.pop(self.pgid, None)
            self.free()
            parent.rebalance()
            return
        assert len(parent.keys) > 1, "parent must have at least 2 children"
        if parent.child_index(self) == 0:
            target = self.next_sibling()
            assert target is not None
            self._absorb(target)
        else:
            target = self.prev_sibling()
            assert target is not None
            target._absorb(self)
        parent.rebalance()

    def _absorb(self, right: Node) -> None:
        """Move every element of ``right`` (our right sibling) into this node."""
        if not right.is_leaf:
            for pgid in right.pgids:
                child = self.bucket.nodes.get(pgid)
                if child is not None and child.parent is not None:
                    child.parent.remove_child(child)
                    child.parent = self
                    self.child_nodes.append(child)
        self.keys += right.keys
        self.values += right.values
        self.flags += right.flags
        self.pgids += right.pgids
        assert self.parent is not None and right.key is not None
        self.parent.delete(right.key)
        self.parent.remove_child(right)
        self.bucket.nodes.pop(right.pgid, None)
        right.free()

    def _collapse_into_root(self) -> None:
        child = self.bucket.node(self.pgids[0], self)
        self.is_leaf = child.is_leaf
        self.keys, self.values = list(child.keys), list(child.values)
        self.flags, self.pgids = list(child.flags), list(child.pgids)
        self.child_nodes = child.child_nodes
        if not self.is_leaf:
            for pgid in self.pgids:
                grandchild = self.bucket.nodes.get(pgid)
                if grandchild is not None:
                    grandchild.parent = self
        child.parent = None
        self.bucket.nodes.pop(child.pgid, None)
        child.free()

    def remove_child(self, target: Node) -> None:
        for i, child in enumerate(self.child_nodes):
            if child is target:
                del self.child_nodes[i]
                return

    def free(self) -> None:
        if self.pgid != 0:
            self.bucket.tx.free_page(self.pgid)
            self.pgid = 0
