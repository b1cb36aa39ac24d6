"""Crash safety of the engine's commit, judged by Go's bbolt.

A subprocess runs one write transaction with the engine under strace, which
kills it (SIGKILL) at the N-th pwrite64 / fdatasync on the database file, for
every N of a clean run, or makes that call fail with EIO. Afterwards:

- Go's check finds the file valid and Go reads exactly the state before or the
  state after the transaction (never a mix); the engine reads the same;
- the engine (and Go) can write to the file again, and it stays valid;
- an injected EIO gives a clean IpamguardError (exit 3 here), no traceback.

A torn meta page (the new meta half written, as after a power loss) must fall
back to the other meta: the state before.

The transactions: one that splits pages (many inserts, an overflow value) and
one that frees pages (deletes, delete_bucket of a bucket with overflow pages).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ops import Model, Op, create_bucket, delete, delete_bucket, dump_python, put, set_sequence
from oracle_tool import Oracle, require_engine, unavailable

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STRACE = shutil.which("strace")
EXIT_ENGINE_ERROR = 3

# Runs one list of txs with the engine; a clean IpamguardError exits 3 with one line.
WRITER = """
import json, sys
from ipamguard.errors import IpamguardError
from ops import apply_txs
txs = json.load(open(sys.argv[2]))
try:
    apply_txs(sys.argv[1], txs)
except IpamguardError as error:
    print(f"engine error: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def strace() -> str:
    require_engine()
    if STRACE is None:
        unavailable("strace is not installed: apt-get install strace")
    assert STRACE is not None
    probe = subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        unavailable(f"strace cannot trace here: {probe.stderr.decode().strip()}")
    return STRACE


def rb(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def split_case() -> tuple[list[list[Op]], list[list[Op]]]:
    """(txs Go writes first, the one tx under test): inserts that split pages."""
    rng = random.Random(10)
    sub = [b"podman1", b"10.89.0.0/16"]
    base = [
        [create_bucket([], b"podman1"), create_bucket([b"podman1"], sub[1])],
        [put(sub, struct.pack(">I", 0x0A590000 + i), rb(rng, 64)) for i in range(2, 300)],
        [create_bucket([b"podman1"], b"ids"), put([b"podman1", b"ids"], b"x", b'["10.89.0.2"]')],
    ]
    test = [put(sub, struct.pack(">I", 0x0A590000 + i), rb(rng, 64)) for i in range(300, 1800)]
    test += [put([b"podman1", b"ids"], b"big", rb(rng, 9000)), set_sequence(sub, 99)]
    test += [create_bucket([], b"podman2"), put([b"podman2"], b"k", b"v")]
    return base, [test]


def free_case() -> tuple[list[list[Op]], list[list[Op]]]:
    """(txs Go writes first, the one tx under test): deletes that free pages."""
    rng = random.Random(11)
    a, b = [b"a"], [b"a", b"nested"]
    base = [
        [create_bucket([], b"a"), create_bucket(a, b"nested")],
        [put(a, b"%05d" % i, rb(rng, 100)) for i in range(1500)],
        [put(b, b"big%d" % i, rb(rng, 6000 + 3000 * i)) for i in range(5)],
        [put(b, b"%05d" % i, rb(rng, 50)) for i in range(400)],
    ]
    test = [delete(a, b"%05d" % i) for i in range(0, 1500, 2)]
    test += [delete(a, b"%05d" % i) for i in range(1, 1000, 2)]
    test += [delete_bucket(a, b"nested")]
    return base, [test]


CASES = {"split": split_case, "free": free_case}


class Scenario:
    def __init__(self, oracle: Oracle, tmp: Path, name: str) -> None:
        base, self.txs = CASES[name]()
        self.oracle = oracle
        self.tmp = tmp
        self.start = tmp / "start.db"
        oracle.apply(self.start, base)
        self.ops_file = tmp / "ops.json"
        self.ops_file.write_text(json.dumps(self.txs))
        self.before = oracle.dump(self.start)
        model = Model.from_dump(self.before)
        for tx in self.txs:
            for op in tx:
                model.apply(op)
        self.after = model.dump()
        self.db = tmp / "work.db"  # one fixed path: strace -P matches it

    def fresh(self) -> Path:
        shutil.copyfile(self.start, self.db)
        return self.db

    def run(
        self, strace: str, *strace_args: str, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
        argv = [
            strace, "-f", "-qq", "-e", "signal=none", "-o", str(log or os.devnull),
            "-P", str(self.db.resolve()), "-e", "trace=pwrite64,fdatasync,fsync",
            *strace_args,
            sys.executable, "-c", WRITER, str(self.db), str(self.ops_file),
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    def count_calls(self, strace: str) -> dict[str, int]:
        """Run cleanly under strace: the number of each call, and the commit order checked."""
        self.fresh()
        log = self.tmp / "clean.strace"
        proc = self.run(strace, log=log)
        assert proc.returncode == 0, proc.stderr
        assert self.oracle.dump(self.db) == self.after, "the clean run gives the wrong content"
        counts = {"pwrite64": 0, "fdatasync": 0, "fsync": 0}
        calls: list[tuple[str, int]] = []  # (name, offset for pwrite64)
        for line in log.read_text().splitlines():
            call = line.split(None, 1)[1] if line[:1].isdigit() else line
            name = call.split("(", 1)[0]
            if name in counts:
                counts[name] += 1
                offset = int(call.rsplit(",", 1)[1].split(")")[0]) if name == "pwrite64" else -1
                calls.append((name, offset))
        self.check_commit_order(calls)
        return counts

    def check_commit_order(self, calls: list[tuple[str, int]]) -> None:
        """Data pages, a sync, then the meta page (page 0 or 1) alone, then a sync."""
        page_size = self.oracle.info(self.start)["page_size"]
        meta_writes = [
            i for i, (n, off) in enumerate(calls) if n == "pwrite64" and off < 2 * page_size
        ]
        assert len(meta_writes) == 1, f"one meta write per commit expected: {calls}"
        m = meta_writes[0]
        syncs = {i for i, (n, _) in enumerate(calls) if n in ("fdatasync", "fsync")}
        data_writes = [i for i, (n, _) in enumerate(calls) if n == "pwrite64" and i != m]
        assert data_writes and max(data_writes) < m, "data pages written after the meta"
        assert any(max(data_writes) < i < m for i in syncs), "no sync between data and meta"
        assert any(i > m for i in syncs), "no sync after the meta write"

    def assert_old_or_new(self, what: str) -> dict[str, Any]:
        errors = self.oracle.check(self.db)
        assert errors == [], f"{what}: Go's check: {errors[:5]}"
        dump = self.oracle.dump(self.db)
        assert dump in (self.before, self.after), f"{what}: neither the state before nor after"
        assert dump_python(self.db) == dump, f"{what}: the engine reads another content than Go"
        return dump

    def assert_writable(self, what: str) -> None:
        """After the crash, the engine and Go both commit on the file; it stays valid."""
        from ops import apply_txs

        apply_txs(self.db, [[create_bucket([], b"after-crash"), put([b"after-crash"], b"k", b"v")]])
        self.oracle.apply(self.db, [[put([b"after-crash"], b"go", b"1")]])
        assert self.oracle.check(self.db) == [], f"{what}: invalid after writing again"
        keys = dump_python(self.db)["buckets"][b"after-crash".hex()]["keys"]
        assert keys == {b"k".hex(): b"v".hex(), b"go".hex(): "31"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kill_at_every_write_and_sync(
    oracle: Oracle, strace: str, tmp_path: Path, case: str
) -> None:
    sc = Scenario(oracle, tmp_path, case)
    counts = sc.count_calls(strace)
    assert counts["pwrite64"] >= 2, f"the engine made {counts} calls: does it use os.pwrite?"
    assert counts["fdatasync"] + counts["fsync"] >= 2, f"no data sync before the meta: {counts}"
    seen = []
    for syscall, n_calls in counts.items():
        for n in range(1, n_calls + 1):
            what = f"SIGKILL at {syscall} #{n} of {n_calls}"
            sc.fresh()
            proc = sc.run(strace, "-e", f"inject={syscall}:signal=KILL:when={n}")
            assert proc.returncode == -signal.SIGKILL, (
                f"{what}: not killed: {proc.returncode} {proc.stderr}"
            )
            dump = sc.assert_old_or_new(what)
            seen.append((what, "after" if dump == sc.after else "before"))
            sc.assert_writable(what)
    # Until the meta page is written (the last pwrite, after a sync): the state before.
    states = dict(seen)
    last_write = f"SIGKILL at pwrite64 #{counts['pwrite64']} of {counts['pwrite64']}"
    assert all(states[w] == "before" for w in states if w.startswith("SIGKILL at pwrite64")), seen
    assert states[last_write] == "before", seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_eio_at_every_write_and_sync(
    oracle: Oracle, strace: str, tmp_path: Path, case: str
) -> None:
    sc = Scenario(oracle, tmp_path, case)
    counts = sc.count_calls(strace)
    for syscall, n_calls in counts.items():
        for n in range(1, n_calls + 1):
            what = f"EIO at {syscall} #{n} of {n_calls}"
            sc.fresh()
            proc = sc.run(strace, "-e", f"inject={syscall}:error=EIO:when={n}")
            assert "Traceback" not in proc.stderr, f"{what}: {proc.stderr}"
            assert proc.returncode == EXIT_ENGINE_ERROR, (
                f"{what}: exit {proc.returncode}: {proc.stderr}"
            )
            assert proc.stderr.count("\n") == 1, f"{what}: not one line: {proc.stderr!r}"
            sc.assert_old_or_new(what)
            sc.assert_writable(what)


@pytest.mark.parametrize("case", sorted(CASES))
def test_torn_meta_page_falls_back(oracle: Oracle, tmp_path: Path, case: str) -> None:
    """The new meta half written (power loss): the other meta, i.e. the state before, is used."""
    require_engine()
    from ops import apply_txs

    sc = Scenario(oracle, tmp_path, case)
    sc.fresh()
    apply_txs(sc.db, sc.txs)
    start, after = sc.start.read_bytes(), sc.db.read_bytes()
    page_size = oracle.info(sc.start)["page_size"]
    changed = [
        i
        for i in (0, 1)
        if start[i * page_size : (i + 1) * page_size] != after[i * page_size : (i + 1) * page_size]
    ]
    assert len(changed) == 1, f"one commit must write exactly one meta page, wrote {changed}"
    off = changed[0] * page_size
    for cut in (8, 16, 20, 40, 64, 72, 79, 80, 512, page_size // 2):
        torn = after[: off + cut] + start[off + cut : off + page_size] + after[off + page_size :]
        sc.db.write_bytes(torn)
        dump = sc.assert_old_or_new(f"meta torn at byte {cut}")
        # Bytes 16..80 hold the meta and its checksum: any cut below 80 leaves this page
        # with an invalid meta or the one of txid - 2; the other page (txid - 1) wins.
        expected = sc.before if cut < 16 + 64 else sc.after
        assert dump == expected, f"meta torn at byte {cut}"
        sc.assert_writable(f"meta torn at byte {cut}")
