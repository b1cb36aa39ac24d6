"""A large ipam.db is read into memory that asks for transparent huge pages (an
anonymous mapping, not a bytes object): everything reads, checks, writes and backs up
from it as from bytes. The file is ipam.db as netavark writes it (Go's bbolt); Go's
check judges what the project writes from it."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from oracle_tool import Oracle, container_id
from test_damaged import dump_tx

from ipamguard.bolt import DB, load_snapshot
from ipamguard.bolt import db as db_module
from ipamguard.bolt.tx import Tx
from ipamguard.context import Overrides, build_context
from ipamguard.manual import release_container

pytestmark = pytest.mark.oracle

COUNT = 12_000  # about 4.6 MB: over HUGE_READ


@pytest.fixture(scope="module")
def large(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("huge") / "ipam.db"
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", COUNT, ids_per_tx=1000)
    data = path.read_bytes()
    assert len(data) >= db_module.HUGE_READ
    return data


@pytest.fixture(autouse=True)
def huge_pages_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The kernel's answer as on most hosts ("madvise" or "always"): the mapping is
    used whatever this machine's setting (madvise(2) only asks)."""
    mode = tmp_path / "enabled"
    mode.write_text("always [madvise] never\n")
    monkeypatch.setattr(db_module, "THP_ENABLED", str(mode))
    db_module.huge_pages.cache_clear()
    yield
    db_module.huge_pages.cache_clear()


def test_a_large_file_reads_as_from_bytes(large: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ipam.db"
    path.write_bytes(large)
    with DB.open(path) as handle, handle.view() as tx:
        assert isinstance(tx.snapshot.data, mmap.mmap)
        assert bytes(tx.snapshot.data) == large
        assert dump_tx(tx) == dump_tx(Tx(load_snapshot(large), writable=False))


def test_a_release_from_the_mapping_and_its_full_copy(
    large: bytes, oracle: Oracle, tmp_path: Path
) -> None:
    """The first write since boot copies the whole file from the mapping: the copy is
    the file before, byte for byte; the file after passes Go's check."""
    path = tmp_path / "ipam.db"
    path.write_bytes(large)
    ctx = build_context(False, Overrides(db=str(path), backup_dir=str(tmp_path / "backups")))
    (store,) = ctx.stores()
    result = release_container(
        ctx, store, container_id(4321), None, dry_run=False, force=True, confirm=None,
        prober=None,
    )  # fmt: skip
    assert result.written and len(result.plan.allocations) == 1
    assert oracle.check(path) == []
    copies = [p for p in (tmp_path / "backups").iterdir() if p.name.endswith(".bak")]
    assert [p.read_bytes() == large for p in copies] == [True]


def test_without_huge_pages_the_file_is_read_as_bytes(
    large: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = tmp_path / "never"
    mode.write_text("always madvise [never]\n")
    monkeypatch.setattr(db_module, "THP_ENABLED", str(mode))
    db_module.huge_pages.cache_clear()
    path = tmp_path / "ipam.db"
    path.write_bytes(large)
    with DB.open(path) as handle:
        assert handle.read_file() == large  # bytes: == compares contents


def test_a_file_shorter_than_its_size_said_gives_what_there_is(tmp_path: Path) -> None:
    """A read that ends early (the file shrank after fstat) returns the bytes read; the
    validation then judges them (too short: refused)."""
    path = tmp_path / "short"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        data = db_module._read_into_huge_pages(fd, db_module.HUGE_READ)
    finally:
        os.close(fd)
    assert data == b"x" * 1000
