"""The ops language shared with the Go oracle, a Python applier and a model.

An ops file is ``{"txs": [[OP, ...], ...]}``; each inner list is one write
transaction. OP is one of (bucket = path of hex names from the top level):

    {"op": "put", "bucket": [HEX, ...], "key": HEX, "value": HEX}
    {"op": "delete", "bucket": [HEX, ...], "key": HEX}
    {"op": "create_bucket", "bucket": [HEX, ...], "name": HEX}   ([] = top level)
    {"op": "delete_bucket", "bucket": [HEX, ...], "name": HEX}
    {"op": "set_sequence", "bucket": [HEX, ...], "value": N}

``apply_txs`` runs them with ipamguard's engine, ``oracle.apply`` with Go's
bbolt. ``dump_python`` and the Go ``dump`` produce the same canonical dict:
``{"buckets": {HEXNAME: {"seq": N, "keys": {HEXKEY: HEXVALUE}, "buckets": {...}}}}``.
``Model`` tracks the expected content so that generators only make valid ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Op = dict[str, Any]
Txs = Sequence[Sequence[Op]]


# --------------------------------------------------------------- op builders


def _path(path: Sequence[bytes]) -> list[str]:
    return [p.hex() for p in path]


def put(path: Sequence[bytes], key: bytes, value: bytes) -> Op:
    return {"op": "put", "bucket": _path(path), "key": key.hex(), "value": value.hex()}


def delete(path: Sequence[bytes], key: bytes) -> Op:
    return {"op": "delete", "bucket": _path(path), "key": key.hex()}


def create_bucket(path: Sequence[bytes], name: bytes) -> Op:
    return {"op": "create_bucket", "bucket": _path(path), "name": name.hex()}


def delete_bucket(path: Sequence[bytes], name: bytes) -> Op:
    return {"op": "delete_bucket", "bucket": _path(path), "name": name.hex()}


def set_sequence(path: Sequence[bytes], value: int) -> Op:
    return {"op": "set_sequence", "bucket": _path(path), "value": value}


# --------------------------------------------------------------- Python engine


def _resolve(tx: Any, path: Sequence[str]) -> Any:
    """The bucket at ``path`` (hex names), or the tx itself for the top level."""
    target = tx
    for i, hexname in enumerate(path):
        target = target.bucket(bytes.fromhex(hexname))
        if target is None:
            raise LookupError(f"bucket path {list(path[: i + 1])} not found")
    return target


def apply_op(tx: Any, op: Op) -> None:
    """Apply one op in a write transaction of ipamguard's engine."""
    target = _resolve(tx, op["bucket"])
    kind = op["op"]
    if kind in ("put", "delete", "set_sequence") and target is tx:
        raise ValueError(f"{kind} needs a bucket path")
    if kind == "put":
        target.put(bytes.fromhex(op["key"]), bytes.fromhex(op["value"]))
    elif kind == "delete":
        target.delete(bytes.fromhex(op["key"]))
    elif kind == "create_bucket":
        target.create_bucket(bytes.fromhex(op["name"]))
    elif kind == "delete_bucket":
        target.delete_bucket(bytes.fromhex(op["name"]))
    elif kind == "set_sequence":
        target.set_sequence(int(op["value"]))
    else:
        raise ValueError(f"unknown op {kind!r}")


def apply_txs(db_path: str | os.PathLike[str], txs: Txs, page_size: int | None = None) -> None:
    """Apply ``txs`` with ipamguard's engine, one ``db.update()`` per tx.

    A missing file is created first (``bolt.create``), like Go's bbolt.Open does.
    """
    from ipamguard import bolt

    if not os.path.exists(db_path):
        bolt.create(db_path, page_size=page_size or 4096)
    with bolt.DB.open(db_path, readonly=False, timeout=5.0) as db:
        for ops in txs:
            with db.update() as tx:
                for op in ops:
                    apply_op(tx, op)


def _dump_bucket(bucket: Any) -> dict[str, Any]:
    keys: dict[str, str] = {}
    buckets: dict[str, Any] = {}
    for key, value in bucket.items():
        if value is None:
            child = bucket.bucket(key)
            assert child is not None, f"items() gave None for {key.hex()} but it is no bucket"
            buckets[key.hex()] = _dump_bucket(child)
        else:
            keys[key.hex()] = bytes(value).hex()
    return {"seq": bucket.sequence, "keys": keys, "buckets": buckets}


def dump_python(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The Go oracle's ``dump``, made by ipamguard's engine (read-only)."""
    from ipamguard import bolt

    with bolt.DB.open(path, readonly=True, timeout=5.0) as db, db.view() as tx:
        buckets: dict[str, Any] = {}
        for name, value in tx.items():
            assert value is None, f"top-level key {name.hex()} is not a bucket"
            child = tx.bucket(name)
            assert child is not None, f"top-level bucket {name.hex()} not found"
            buckets[name.hex()] = _dump_bucket(child)
        return {"buckets": buckets}


# --------------------------------------------------------------- model


@dataclass
class ModelBucket:
    seq: int = 0
    keys: dict[bytes, bytes] = field(default_factory=dict)
    buckets: dict[bytes, ModelBucket] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "keys": {k.hex(): v.hex() for k, v in self.keys.items()},
            "buckets": {k.hex(): b.dump() for k, b in self.buckets.items()},
        }

    def walk(self, path: tuple[bytes, ...] = ()) -> Iterator[tuple[tuple[bytes, ...], ModelBucket]]:
        for name, child in sorted(self.buckets.items()):
            yield (*path, name), child
            yield from child.walk((*path, name))

    def size(self) -> int:
        """Bytes of keys and values in this bucket and below (a rough measure)."""
        own = sum(len(k) + len(v) for k, v in self.keys.items())
        return own + sum(len(k) + b.size() for k, b in self.buckets.items())


class Model:
    """The expected content of a database, changed by the same ops."""

    def __init__(self) -> None:
        self.root = ModelBucket()

    def bucket(self, path: Sequence[bytes]) -> ModelBucket:
        b = self.root
        for name in path:
            b = b.buckets[name]
        return b

    def apply(self, op: Op) -> None:
        b = self.bucket([bytes.fromhex(p) for p in op["bucket"]])
        kind = op["op"]
        if kind == "put":
            key = bytes.fromhex(op["key"])
            assert key not in b.buckets
            b.keys[key] = bytes.fromhex(op["value"])
        elif kind == "delete":
            b.keys.pop(bytes.fromhex(op["key"]), None)
        elif kind == "create_bucket":
            name = bytes.fromhex(op["name"])
            assert name not in b.buckets and name not in b.keys
            b.buckets[name] = ModelBucket()
        elif kind == "delete_bucket":
            del b.buckets[bytes.fromhex(op["name"])]
        elif kind == "set_sequence":
            b.seq = int(op["value"])
        else:
            raise ValueError(kind)

    def dump(self) -> dict[str, Any]:
        return {"buckets": {k.hex(): b.dump() for k, b in self.root.buckets.items()}}

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> Model:
        def load(d: dict[str, Any]) -> ModelBucket:
            return ModelBucket(
                seq=d["seq"],
                keys={bytes.fromhex(k): bytes.fromhex(v) for k, v in d["keys"].items()},
                buckets={bytes.fromhex(k): load(v) for k, v in d["buckets"].items()},
            )

        model = cls()
        model.root.buckets = {bytes.fromhex(k): load(v) for k, v in dump["buckets"].items()}
        return model


def dump_diff(a: dict[str, Any], b: dict[str, Any], limit: int = 12) -> list[str]:
    """A short human list of the differences between two dumps (for assertion messages)."""
    out: list[str] = []

    def walk(x: dict[str, Any], y: dict[str, Any], where: str) -> None:
        if len(out) >= limit:
            return
        if x.get("seq") != y.get("seq"):
            out.append(f"{where}: seq {x.get('seq')} != {y.get('seq')}")
        xk, yk = x.get("keys", {}), y.get("keys", {})
        for k in sorted(set(xk) | set(yk)):
            if xk.get(k) != yk.get(k):
                left, right = xk.get(k), yk.get(k)
                out.append(f"{where} key {k[:40]}: {_short(left)} != {_short(right)}")
                if len(out) >= limit:
                    return
        xb, yb = x.get("buckets", {}), y.get("buckets", {})
        for k in sorted(set(xb) | set(yb)):
            if k not in xb or k not in yb:
                out.append(f"{where} bucket {k[:40]}: only in {'left' if k in xb else 'right'}")
            else:
                walk(xb[k], yb[k], f"{where}/{k[:16]}")

    walk(a, b, "")
    return out


def _short(value: str | None) -> str:
    if value is None:
        return "<missing>"
    return value if len(value) <= 24 else f"{value[:16]}..({len(value) // 2} bytes)"
