"""A bucket: a B+tree of keys, values and nested buckets (bbolt's bucket.go)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ipamguard.bolt.cursor import Cursor, PageOrNode
from ipamguard.bolt.node import Node
from ipamguard.bolt.page import (
    BUCKET_LEAF_FLAG,
    ELEMENT_SIZE,
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    PAGE_HEADER_SIZE,
    Page,
    decode_bucket_header,
    encode_bucket_header,
)
from ipamguard.errors import (
    BucketExists,
    BucketNotFound,
    IncompatibleValue,
    KeyRequired,
    KeyTooLarge,
    ValueTooLarge,
)

if TYPE_CHECKING:
    from ipamguard.bolt.tx import Tx

DEFAULT_FILL_PERCENT = 0.5


class Bucket:
    """A collection of keys and nested buckets, valid for its transaction only."""

    __slots__ = ("buckets", "fill_percent", "nodes", "page", "root", "root_node", "sequence", "tx")

    def __init__(self, tx: Tx, root: int, sequence: int, page: Page | None = None) -> None:
        self.tx = tx
        self.root = root  # root page id; 0 for an inline bucket
        self.sequence = sequence
        self.page = page  # the inline page of an inline bucket
        self.root_node: Node | None = None
        self.nodes: dict[int, Node] = {}
        self.buckets: dict[bytes, Bucket] = {}
        self.fill_percent = DEFAULT_FILL_PERCENT

    # --- reading --------------------------------------------------------------

    def cursor(self) -> Cursor:
        self.tx.check_open()
        return Cursor(self)

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``; None if missing or a nested bucket."""
        k, v, flags = self.cursor().seek(key)
        if k != key or flags & BUCKET_LEAF_FLAG:
            return None
        return v

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        """(key, value) in key order; value None for a nested bucket."""
        self.tx.check_open()
        return self._walk(self.root)

    def _walk(self, pgid: int) -> Iterator[tuple[bytes, bytes | None]]:
        elem = self.page_node(pgid)
        if not elem.is_leaf:
            for child in elem.pgids:
                yield from self._walk(child)
            return
        for key, value, flags in zip(elem.keys, elem.values, elem.flags, strict=True):
            yield key, (None if flags & BUCKET_LEAF_FLAG else value)

    def leaf_pgids(self) -> Iterator[int]:
        """The ids of the leaf pages in key order, without decoding the leaves
        (a read-only transaction; an inline bucket has none: see leaf_pages)."""
        self.tx.check_open()
        if self.root == 0:
            return
        snapshot = self.tx.snapshot
        stack = [self.root]
        while stack:
            pgid = stack.pop()
            if pgid in snapshot.leaves and pgid not in self.nodes:
                yield pgid
            else:
                stack.extend(reversed(self.page_node(pgid).pgids))

    def bucket(self, name: bytes) -> Bucket | None:
        """The nested bucket ``name``, or None."""
        child = self.buckets.get(name)
        if child is not None:
            return child
        k, value, flags = self.cursor().seek(name)
        if k != name or not flags & BUCKET_LEAF_FLAG or value is None:
            return None
        child = self._open_bucket(value)
        self.buckets[name] = child
        return child

    def _open_bucket(self, value: bytes) -> Bucket:
        root, sequence = decode_bucket_header(value)
        page = self.tx.inline_page(value) if root == 0 else None
        return Bucket(self.tx, root, sequence, page)

    def page_node(self, pgid: int) -> PageOrNode:
        if self.root == 0:
            if pgid != 0:
                raise AssertionError(f"inline bucket non-zero page access: {pgid}")
            if self.root_node is not None:
                return self.root_node
            assert self.page is not None
            return self.page
        node = self.nodes.get(pgid)
        return node if node is not None else self.tx.page(pgid)

    # --- writing --------------------------------------------------------------

    def create_bucket(self, name: bytes) -> Bucket:
        self.tx.check_writable()
        if not name:
            raise KeyRequired("a bucket name is required")
        if len(name) > MAX_KEY_SIZE:
            raise KeyTooLarge(f"bucket name of {len(name)} bytes is too long")
        cursor = self.cursor()
        k, _, flags = cursor.seek(name)
        if k == name:
            if flags & BUCKET_LEAF_FLAG:
                raise BucketExists(f"bucket {name!r} already exists")
            raise IncompatibleValue(f"key {name!r} holds a value, not a bucket")
        empty = Node(self, is_leaf=True)
        value = encode_bucket_header(0, 0) + empty.encode(0, PAGE_HEADER_SIZE)
        cursor.node().put(name, name, value, 0, BUCKET_LEAF_FLAG)
        self.page = None  # a bucket with sub-buckets is never inline
        child = self.bucket(name)
        assert child is not None
        return child

    def create_bucket_if_not_exists(self, name: bytes) -> Bucket:
        try:
            return self.create_bucket(name)
        except BucketExists:
            child = self.bucket(name)
            assert child is not None
            return child

    def delete_bucket(self, name: bytes) -> None:
        self.tx.check_writable()
        cursor = self.cursor()
        k, _, flags = cursor.seek(name)
        if k != name:
            raise BucketNotFound(f"bucket {name!r} not found")
        if not flags & BUCKET_LEAF_FLAG:
            raise IncompatibleValue(f"key {name!r} holds a value, not a bucket")
        child = self.bucket(name)
        assert child is not None
        for key, value in list(child.items()):
            if value is None:
                child.delete_bucket(key)
        self.buckets.pop(name, None)
        child.nodes = {}
        child.root_node = None
        child.free()
        cursor.node().delete(name)

    def put(self, key: bytes, value: bytes) -> None:
        self.tx.check_writable()
        if not key:
            raise KeyRequired("a key is required")
        if len(key) > MAX_KEY_SIZE:
            raise KeyTooLarge(f"key of {len(key)} bytes is too long")
        if len(value) > MAX_VALUE_SIZE:
            raise ValueTooLarge(f"value of {len(value)} bytes is too long")
        cursor = self.cursor()
        k, _, flags = cursor.seek(key)
        if k == key and flags & BUCKET_LEAF_FLAG:
            raise IncompatibleValue(f"key {key!r} holds a bucket, not a value")
        cursor.node().put(key, key, bytes(value), 0, 0)

    def delete(self, key: bytes) -> None:
        """Delete ``key``; a missing key is not an error (as in bbolt)."""
        self.tx.check_writable()
        cursor = self.cursor()
        k, _, flags = cursor.seek(key)
        if k != key:
            return
        if flags & BUCKET_LEAF_FLAG:
            raise IncompatibleValue(f"key {key!r} holds a bucket, not a value")
        cursor.node().delete(key)

    def set_sequence(self, value: int) -> None:
        self.tx.check_writable()
        if self.root_node is None:
            self.node(self.root, None)  # materialize so that the bucket is written
        self.sequence = value

    def next_sequence(self) -> int:
        self.set_sequence(self.sequence + 1)
        return self.sequence

    # --- commit ---------------------------------------------------------------

    def node(self, pgid: int, parent: Node | None) -> Node:
        """The node for page ``pgid``, created from the page on first use."""
        node = self.nodes.get(pgid)
        if node is not None:
            return node
        node = Node(self, is_leaf=True, parent=parent)
        if parent is None:
            self.root_node = node
        else:
            parent.child_nodes.append(node)
        page = self.page if self.page is not None else self.tx.page(pgid)
        node.read(page)
        self.nodes[pgid] = node
        return node

    def rebalance(self) -> None:
        for node in list(self.nodes.values()):
            if self.nodes.get(node.pgid) is node:  # not merged away meanwhile
                node.rebalance()
        for child in self.buckets.values():
            child.rebalance()

    def spill(self) -> None:
        """Write changed nested buckets, then this bucket's nodes (bbolt's spill)."""
        for name, child in self.buckets.items():
            if child._inlineable():
                child.free()
                value = child._inline_value()
            else:
                child.spill()
                value = encode_bucket_header(child.root, child.sequence)
            if child.root_node is None:
                continue  # never materialized: unchanged
            cursor = self.cursor()
            k, _, flags = cursor.seek(name)
            if k != name or not flags & BUCKET_LEAF_FLAG:
                raise AssertionError(f"misplaced bucket header: {name!r} -> {k!r}")
            cursor.node().put(name, name, value, 0, BUCKET_LEAF_FLAG)
        if self.root_node is None:
            return
        self.root_node.spill()
        while self.root_node.parent is not None:
            self.root_node = self.root_node.parent
        self.root = self.root_node.pgid

    def _inlineable(self) -> bool:
        node = self.root_node
        if node is None or not node.is_leaf:
            return False
        limit = self.tx.page_size // 4
        size = PAGE_HEADER_SIZE
        for key, value, flags in zip(node.keys, node.values, node.flags, strict=True):
            size += ELEMENT_SIZE + len(key) + len(value)
            if flags & BUCKET_LEAF_FLAG or size > limit:
                return False
        return True

    def _inline_value(self) -> bytes:
        node = self.root_node
        assert node is not None
        page = node.encode(0, node.size())
        return encode_bucket_header(0, self.sequence) + bytes(page)

    def free(self) -> None:
        """Free every page of this bucket (for deletion or inlining)."""
        if self.root == 0:
            return
        stack: list[int] = [self.root]
        while stack:
            pgid = stack.pop()
            node = self.nodes.get(pgid)
            if node is not None:
                if not node.is_leaf:
                    stack.extend(node.pgids)
                node.free()
            else:
                page = self.tx.page(pgid)
                if not page.is_leaf:
                    stack.extend(page.pgids)
                self.tx.free_page(pgid)
        self.root = 0

    def __repr__(self) -> str:
        return f"<Bucket root={self.root} sequence={self.sequence}>"
