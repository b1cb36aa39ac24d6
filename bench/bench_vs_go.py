"""ipamguard against Go's bbolt on the same files, pair by pair, in one run.

    python3 bench/bench_vs_go.py [--count 65000] [--rounds 7]

For each size it makes an ipam.db exactly as netavark does (Go's bbolt, via the
test oracle), then times whole processes, alternating ipamguard and Go:

- dump:    ``ipamguard dump --json``           vs the oracle's ``ipam-dump``
- release: ``ipamguard release --force --yes`` vs the oracle's ``ipam-release``
           (same container, each on a fresh copy); also the time each held
           ipam.db's lock (ipamguard: flock EX to unlock; Go: Open to Close)
- check:   ``ipamguard check --json`` against a stand-in for podman's API (a
           unix-socket HTTP server in this process that lists every container
           of the file as running but 10, which are then the findings); the
           real API is exercised by the e2e tests, not timed here

ipamguard runs from a venv of the system's Python when /usr/bin/python3 exists
(what packaging/install.sh installs), so interpreter start-up is the product's.
Medians are reported; RSS is the peak resident set of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from oracle_tool import build_oracle, container_id  # noqa: E402


def run(argv: list[str]) -> tuple[float, str, str]:
    """(seconds, stdout, stderr) of one whole process."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1, 2):
        raise SystemExit(f"{argv} failed: {done.stderr}")
    return seconds, done.stdout, done.stderr


class FakePodmanApi:
    """Answers GET .../containers/json with the given IDs, all running (a stand-in)."""

    def __init__(self, path: Path, ids: list[str]) -> None:
        body = json.dumps([{"Id": i, "State": "running", "Names": [i[:12]]} for i in ids])
        payload = body.encode()
        header = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        self.response = header + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        self.url = f"unix://{path}"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(self.response)


def ipamguard_command(workdir: Path) -> list[str]:
    system = Path("/usr/bin/python3")
    if not system.exists():
        return [sys.executable, "-m", "ipamguard"]
    venv = workdir / "venv"
    subprocess.run([str(system), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True, cwd=workdir)
    return [str(venv / "bin" / "ipamguard")]


def measure_rss(argv: list[str]) -> int:
    """Peak RSS (KiB) of one run, measured with GNU time when present."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(gnu_time):
        return -1
    done = subprocess.run(
        [gnu_time, "-f", "%M", *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    try:
        return int(done.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return -1


def bench_size(count: int, rounds: int, oracle: Path, ig: list[str], work: Path) -> dict:
    db = work / f"ipam-{count}.db"
    subprocess.run(
        [str(oracle), "ipam-gen", str(db), "--network", "podman1", "--subnet",
         "10.89.0.0/16", "--count", str(count), "--ids-per-tx", "100"],
        check=True,
    )  # fmt: skip
    victim = container_id(count // 2)
    times: dict[str, list[float]] = {k: [] for k in ("dump_py", "dump_go", "rel_py", "rel_go")}
    holds: dict[str, list[float]] = {"py": [], "go": []}
    check_times: list[float] = []
    api = FakePodmanApi(work / f"api-{count}.sock", [container_id(i) for i in range(10, count)])
    backups = work / "backups"
    for _ in range(rounds):
        t, *_ = run([*ig, "dump", "--json", "--db", str(db)])
        times["dump_py"].append(t)
        t, *_ = run([str(oracle), "ipam-dump", str(db)])
        times["dump_go"].append(t)
        mine, theirs = work / "mine.db", work / "theirs.db"
        shutil.copyfile(db, mine)
        shutil.copyfile(db, theirs)
        t, out, err = run(
            [*ig, "release", "--container", victim, "--force", "--yes", "--json",
             "--db", str(mine), "--backup-dir", str(backups)]
        )  # fmt: skip
        times["rel_py"].append(t)
        holds["py"].append(json.loads(out)["lock_hold_ms"])
        t, out, err = run([str(oracle), "ipam-release", str(theirs), victim])
        times["rel_go"].append(t)
        holds["go"].append(int(err.split("held_us=")[1].split()[0]) / 1000)
        t, out, _ = run([*ig, "check", "--json", "--db", str(db), "--url", api.url])
        check_times.append(t)
        found = json.loads(out)
        assert len(found["findings"]) == 10, (len(found["findings"]), found["liveness"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "allocations": count,
        "file_bytes": db.stat().st_size,
        "dump_s": {"ipamguard": med["dump_py"], "go": med["dump_go"]},
        "dump_ratio": med["dump_py"] / med["dump_go"],
        "release_s": {"ipamguard": med["rel_py"], "go": med["rel_go"]},
        "release_ratio": med["rel_py"] / med["rel_go"],
        "lock_hold_ms": {
            "ipamguard": statistics.median(holds["py"]),
            "go": statistics.median(holds["go"]),
        },
        "check_s": statistics.median(check_times),
        "rss_kib": {
            "dump_ipamguard": measure_rss([*ig, "dump", "--json", "--db", str(db)]),
            "dump_go": measure_rss([str(oracle), "ipam-dump", str(db)]),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, action="append", help="allocations (repeatable)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_vs_go.json"))
    args = parser.parse_args()
    counts = args.count or [1000, 65000]
    oracle = build_oracle()
    with tempfile.TemporaryDirectory(prefix="ipamguard-bench-") as tmp:
        work = Path(tmp)
        ig = ipamguard_command(work)
        results = [bench_size(n, args.rounds, oracle, ig, work) for n in counts]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'allocations':>11} {'dump py/go (s)':>18} {'ratio':>6} {'release py/go (s)':>20}"
          f" {'ratio':>6} {'lock ms py/go':>15} {'check s':>8}")  # fmt: skip
    for r in results:
        print(
            f"{r['allocations']:>11} "
            f"{r['dump_s']['ipamguard']:>8.3f}/{r['dump_s']['go']:<8.3f} {r['dump_ratio']:>6.1f} "
            f"{r['release_s']['ipamguard']:>9.3f}/{r['release_s']['go']:<9.3f} "
            f"{r['release_ratio']:>6.1f} "
            f"{r['lock_hold_ms']['ipamguard']:>7.2f}/{r['lock_hold_ms']['go']:<7.2f} "
            f"{r['check_s']:>8.3f}"
        )
    print(f"peak RSS (KiB): {[r['rss_kib'] for r in results]}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
