"""The Go oracle (tests/oracle/boltoracle.go) as a Python object for the tests.

The oracle is Go's own bbolt (Debian's go.etcd.io/bbolt source) in a small
program: it checks, dumps and writes bbolt files so that the tests can compare
ipamguard's pure-Python engine with the reference implementation.

It is built once per session into ``tests/.cache/`` (rebuilt when the Go source
is newer than the binary). Without Go or the bbolt source the oracle tests are
skipped locally; when the environment variable ``CI`` is set they fail instead,
so that CI never skips them silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ORACLE_SOURCE = TESTS_DIR / "oracle" / "boltoracle.go"
CACHE_DIR = TESTS_DIR / ".cache"
ORACLE_BINARY = CACHE_DIR / "boltoracle"
GOPATH = os.environ.get("IPAMGUARD_GOPATH", "/usr/share/gocode")
BBOLT_SOURCE = Path(GOPATH) / "src" / "go.etcd.io" / "bbolt"

Txs = Sequence[Sequence[dict[str, Any]]]


class OracleError(Exception):
    """The oracle could not do the work (exit 2): the message is its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} -> exit {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (under CI) a test that needs something missing."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this must not be skipped)", pytrace=False)
    pytest.skip(reason)


def require_engine() -> None:
    """The tests of the Python engine need ``ipamguard.bolt`` (skip/fail like the oracle)."""
    try:
        import ipamguard.bolt as bolt

        bolt.DB  # noqa: B018 - the API exists, not only the package
    except (ImportError, AttributeError) as error:
        unavailable(f"ipamguard.bolt is not usable yet: {error!r}")


def build_oracle() -> Path:
    """Build the oracle if needed and return the binary's path (fails with a message)."""
    go = shutil.which("go")
    if go is None:
        unavailable("the Go toolchain (go) is not installed: apt-get install golang-go")
    if not (BBOLT_SOURCE / "db.go").is_file():
        unavailable(
            f"bbolt's Go source is missing at {BBOLT_SOURCE}: "
            "apt-get install golang-github-coreos-bbolt-dev"
        )
    assert go is not None
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "boltoracle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers build once
        if (
            ORACLE_BINARY.exists()
            and ORACLE_BINARY.stat().st_mtime >= ORACLE_SOURCE.stat().st_mtime
        ):
            return ORACLE_BINARY
        env = dict(os.environ)
        env.update(
            GO111MODULE="off",
            GOPATH=GOPATH,
            GOFLAGS="",
            CGO_ENABLED="0",
            GOCACHE=str(CACHE_DIR / "go-build"),
        )
        tmp = ORACLE_BINARY.with_suffix(".tmp")
        proc = subprocess.run(
            [go, "build", "-o", str(tmp), str(ORACLE_SOURCE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.fail(f"building the Go oracle failed:\n{proc.stderr}", pytrace=False)
        os.replace(tmp, ORACLE_BINARY)
    return ORACLE_BINARY


def container_id(index: int) -> str:
    """The container ID that ``ipam-gen`` uses for allocation number ``index``."""
    return hashlib.sha256(f"ipamguard-test-container-{index}".encode()).hexdigest()


class Oracle:
    """Runs the Go oracle. Every method raises OracleError when the oracle exits 2."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(
        self, *args: str | os.PathLike[str], ok: Iterable[int] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if proc.returncode not in tuple(ok):
            raise OracleError(argv, proc.returncode, proc.stderr)
        return proc

    def check(self, path: str | os.PathLike[str]) -> list[str]:
        """bbolt's tx.Check() plus a structural walk: [] when the file is valid."""
        proc = self.run("check", path, ok=(0, 1))
        errors = proc.stdout.splitlines()
        if proc.returncode == 1 and not errors:
            errors = ["check failed without a message"]
        return errors

    def dump(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """{"buckets": {HEXNAME: {"seq": N, "keys": {HEXKEY: HEXVALUE}, "buckets": {...}}}}"""
        result: dict[str, Any] = json.loads(self.run("dump", path).stdout)
        return result

    def info(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The meta in use: page_size, txid, high_water_mark, freelist_pgid, free_pages, ..."""
        result: dict[str, Any] = json.loads(self.run("info", path).stdout)
        return result

    def stats(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """bbolt's BucketStats: {"buckets": {HEXNAME: {...}}, "total": {"Depth", ...}}"""
        result: dict[str, Any] = json.loads(self.run("stats", path).stdout)
        return result

    def apply(self, path: str | os.PathLike[str], txs: Txs, page_size: int | None = None) -> None:
        """Apply the ops (see tests/bolt/ops.py) with Go's bbolt, one db.Update per tx."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"txs": [list(tx) for tx in txs]}, f)
        try:
            extra = ["--page-size", str(page_size)] if page_size else []
            self.run("apply", path, f.name, *extra)
        finally:
            os.unlink(f.name)

    @contextlib.contextmanager
    def hold(self, path: str | os.PathLike[str], readonly: bool = False) -> Iterator[None]:
        """Go's bbolt keeps the file open (exclusive flock, or shared if readonly) meanwhile."""
        argv = [str(self.binary), "hold", str(path), "--readonly", "1" if readonly else "0"]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "locked":
                proc.wait(timeout=30)
                raise OracleError(argv, proc.returncode, proc.stderr.read() if proc.stderr else "")
            yield
        finally:
            if proc.stdin:
                proc.stdin.close()  # the oracle closes the db when its stdin closes
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def ipam_gen(
        self,
        path: str | os.PathLike[str],
        network: str,
        subnet: str,
        count: int,
        ids_per_tx: int = 1000,
        first_index: int = 0,
    ) -> None:
        """Allocate ``count`` IPs as netavark does (container IDs: ``container_id(i)``)."""
        self.run(
            "ipam-gen", path,
            "--network", network, "--subnet", subnet, "--count", str(count),
            "--ids-per-tx", str(ids_per_tx), "--first-index", str(first_index),
        )  # fmt: skip

    def ipam_dump(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """{"networks": [{"name", "subnets": [{"subnet", "last_ip", "allocations"}], "ids"}]}"""
        result: dict[str, Any] = json.loads(self.run("ipam-dump", path).stdout)
        return result

    def ipam_held(self, path: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
        """{(network, ip): container ID} of ipam.db, as Go's bbolt reads it."""
        return held_of(self.ipam_dump(path))

    def ipam_release(self, path: str | os.PathLike[str], cid: str) -> tuple[int, int]:
        """podman's deallocIPs of ``cid`` on every network: (IPs removed, µs the db was held)."""
        proc = self.run("ipam-release", path, cid)
        held = [line for line in proc.stderr.splitlines() if line.startswith("held_us=")]
        return int(proc.stdout.strip()), int(held[-1].split("=", 1)[1]) if held else -1


def held_of(dump: dict[str, Any]) -> dict[tuple[str, str], str]:
    """{(network, ip): container ID} of an ``Oracle.ipam_dump``."""
    return {
        (n["name"], a["ip"]): a["container_id"]
        for n in dump["networks"]
        for s in n["subnets"]
        for a in s["allocations"]
    }


class OracleServer:
    """The oracle's ``serve`` command: many checks and dumps in one Go process.

    Each answer is a dict: ``{"errors": [...], "dump": {...} | None}``, or ``{"fail": MSG}``
    where the one-shot command would exit 2. If the process dies (a crash in bbolt that
    the oracle's own structural check did not foresee), the answer is
    ``{"fail": "oracle crashed: ..."}`` and the next request starts a new process.
    """

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.proc: subprocess.Popen[str] | None = None
        self.last_stderr = ""  # of the last process that ended

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return self.proc

    def ask(self, request: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """``request`` is check, dump or checkdump (a dump only if the check passes)."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{request} {os.fspath(path)}\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.close()
            return {"fail": f"oracle crashed: {self.last_stderr.strip()[-500:]}"}
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:  # closes stdin: the oracle ends
            _, self.last_stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, self.last_stderr = proc.communicate()

    def __enter__(self) -> OracleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
