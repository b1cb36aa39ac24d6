"""A freelist of more than 0xFFFF pages: the count moves into the first u64."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops import create_bucket, delete, dump_python, put
from oracle_tool import Oracle

from ipamguard.bolt import DB, load_snapshot

pytestmark = pytest.mark.oracle


def test_engine_reads_and_writes_the_0xffff_freelist_form(oracle: Oracle, tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    big = bytes(range(256)) * 400  # 102,400 bytes: 100 overflow pages of 1024 bytes
    names = [b"v%04d" % i for i in range(700)]
    oracle.apply(path, [[create_bucket([], b"b")]], page_size=1024)
    for start in range(0, len(names), 100):
        oracle.apply(path, [[put([b"b"], n, big) for n in names[start : start + 100]]])
    oracle.apply(path, [[delete([b"b"], n) for n in names]])
    free = oracle.info(path)["free_pages"]
    assert free > 0xFFFF  # Go wrote the large form
    snapshot = load_snapshot(path.read_bytes())
    assert len(snapshot.free) == free
    with DB.open(path, readonly=False) as db, db.update() as tx:
        bucket = tx.bucket(b"b")
        assert bucket is not None
        bucket.put(b"after", b"x")
    assert oracle.check(path) == []
    assert oracle.dump(path) == dump_python(path)
    assert oracle.info(path)["free_pages"] > 0xFFFF  # and the engine wrote it back
