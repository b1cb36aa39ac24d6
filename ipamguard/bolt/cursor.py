"""A cursor over one bucket's B+tree, over pages or nodes (bbolt's cursor.go).

Only what writes need: ``seek`` to a key and ``node`` to materialize the leaf
under it. Iteration is ``Bucket.items``, a direct walk of the tree.

A stack of (page-or-node, index) from the bucket's root to a leaf. ``Page``
and ``Node`` share the attributes the cursor reads (``is_leaf``, ``keys``,
``values``, ``flags``, ``pgids``), so the walk is the same over both.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from ipamguard.bolt.node import Node
from ipamguard.bolt.page import Page

if TYPE_CHECKING:
    from ipamguard.bolt.bucket import Bucket

PageOrNode = Page | Node
KeyValue = tuple[bytes | None, bytes | None, int]


class _Ref:
    __slots__ = ("elem", "index")

    def __init__(self, elem: PageOrNode, index: int) -> None:
        self.elem = elem
        self.index = index


class Cursor:
    __slots__ = ("bucket", "stack")

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.stack: list[_Ref] = []

    def _top(self) -> tuple[PageOrNode, int]:
        ref = self.stack[-1]
        return ref.elem, ref.index

    def seek(self, key: bytes) -> KeyValue:
        """Position at ``key`` or where it would be inserted (may be past the end)."""
        self.stack = []
        pgid = self.bucket.root
        while True:
            elem = self.bucket.page_node(pgid)
            if elem.is_leaf:
                self.stack.append(_Ref(elem, bisect_left(elem.keys, key)))
                return self.key_value()
            index = bisect_left(elem.keys, key)
            if index == len(elem.keys) or elem.keys[index] != key:
                index = max(index - 1, 0)
            self.stack.append(_Ref(elem, index))
            pgid = elem.pgids[index]

    def key_value(self) -> KeyValue:
        elem, index = self._top()
        if index >= len(elem.keys):
            return None, None, 0
        return elem.keys[index], elem.values[index], elem.flags[index]

    def node(self) -> Node:
        """The leaf node under the cursor, materializing nodes from the root down."""
        elem, _ = self._top()
        if isinstance(elem, Node) and elem.is_leaf:
            return elem
        root = self.stack[0].elem
        node = root if isinstance(root, Node) else self.bucket.node(root.id, None)
        for ref in self.stack[:-1]:
            node = node.child_at(ref.index)
        assert node.is_leaf, "expected leaf node"
        return node
