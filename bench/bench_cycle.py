"""The daemon's cost per change of ipam.db, and its memory, against the allocations held.

    .venv/bin/python bench/bench_cycle.py [--count 1000 --count 65000] [--changes 10]

For each size, an ipam.db as netavark writes it (Go's bbolt, via the test oracle) and
a stand-in for podman's API listing every container of the file as running (a unix
socket in this process; the e2e tests exercise the real API). The daemon's reconcile
cycle (ipamguard.daemon.cycle.ReconcileCycle, the real one, repair on) runs once at
start, then after each of ``--changes`` single-container changes made by Go's bbolt
(one allocation added, as ``podman run`` does): the CPU seconds of each cycle
(time.process_time of this process, which runs the cycle; the stand-in API's own
work runs in another process) and the resident set at the end are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from oracle_tool import build_oracle, container_id  # noqa: E402

from ipamguard.config import parse_config  # noqa: E402
from ipamguard.daemon.cycle import ReconcileCycle  # noqa: E402

API = """
import json, socket, sys, urllib.parse
path, count = sys.argv[1], int(sys.argv[2])
ids = [l.strip() for l in open(sys.argv[3])]
def body(wanted):
    chosen = ids if wanted is None else [i for i in wanted if i in known]
    return json.dumps([{"Id": i, "State": "running", "Names": [i[:12]]} for i in chosen]).encode()
server = socket.socket(socket.AF_UNIX); server.bind(path); server.listen(8)
print("ready", flush=True)
streams = []  # event streams (bench_process.py's daemon): open, silent
def serve(conn):
    # answer conn's requests; True if it stays open (an event stream)
    global known
    buf = b""
    while True:
        while b"\\r\\n\\r\\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
        head, _, buf = buf.partition(b"\\r\\n\\r\\n")
        target = head.split(b"\\r\\n")[0].split(b" ")[1].decode()
        if target.endswith("/_ping"):  # the daemon's, before its event stream (keep-alive)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nOK")
            continue
        if "/events" in target:
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Transfer-Encoding: chunked\\r\\n\\r\\n")
            return True
        if "/containers/json" in target:
            ids[:] = [l.strip() for l in open(sys.argv[3])]
            known = set(ids)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            filters = json.loads(query["filters"][0]) if "filters" in query else {}
            payload = body(filters.get("id"))  # podman's filter: these IDs alone
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Length: %d\\r\\n\\r\\n" % len(payload) + payload)
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
        return False
while True:
    conn, _ = server.accept()
    if serve(conn):
        streams.append(conn)
    else:
        conn.close()
"""


def status_kb(pid: int | str, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM); ``pid`` "self" for this one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib() -> float:
    return status_kb("self", "VmRSS") / 1024


@dataclass
class Files:
    """An ipam.db of allocations as netavark writes them (Go's bbolt), the stand-in API
    listing their containers as running, and a daemon configuration (repair on) for both."""

    oracle: Path
    db: Path
    ids: Path
    api: subprocess.Popen[str]
    config: str  # TOML

    def add_one(self, index: int) -> None:
        """One allocation more, for container ``index``, as ``podman run`` makes it."""
        with self.ids.open("a") as f:
            f.write(container_id(index) + "\n")
        gen = [*_ipam_gen(self.oracle, self.db), "--count", "1", "--first-index", str(index)]
        subprocess.run(gen, check=True)

    def close(self) -> None:
        self.api.kill()
        self.api.wait()


def _ipam_gen(oracle: Path, db: Path) -> list[str]:
    """The oracle's command that adds allocations to ``db`` (one /16 network)."""
    return [str(oracle), "ipam-gen", str(db), "--network", "podman1", "--subnet", "10.89.0.0/16"]


def prepare(count: int, oracle: Path, work: Path) -> Files:
    db = work / "ipam.db"
    gen = [*_ipam_gen(oracle, db), "--count", str(count), "--ids-per-tx", "100"]
    subprocess.run(gen, check=True)
    ids = work / "ids"
    ids.write_text("\n".join(container_id(i) for i in range(count)) + "\n")
    sock = work / "api.sock"
    api = subprocess.Popen([sys.executable, "-c", API, str(sock), str(count), str(ids)],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert api.stdout is not None and api.stdout.readline().strip() == "ready"
    networks = work / "networks"
    networks.mkdir(exist_ok=True)
    (networks / "podman1.json").write_text(json.dumps({"name": "podman1", "driver": "bridge"}))
    config = (
        f'[repair]\nenabled = true\n[paths]\ndb = "{db}"\nnetwork_dir = "{networks}"\n'
        f'backup_dir = "{work / "backups"}"\n[podman]\nurl = "unix://{sock}"\n'
    )
    return Files(oracle, db, ids, api, config)


def bench(count: int, changes: int, oracle: Path, work: Path) -> dict[str, object]:
    files = prepare(count, oracle, work)
    config = parse_config(files.config)
    cycle = ReconcileCycle()
    try:
        started = time.process_time()
        first = cycle.run("start", config)
        cold = time.process_time() - started
        assert first.open_findings == 0, first
        per_change = []
        for n in range(changes):
            files.add_one(count + n)
            started = time.process_time()
            result = cycle.run("db-changed: IN_MODIFY ipam.db", config, frozenset())
            per_change.append(time.process_time() - started)
            assert result.open_findings == 0, result
    finally:
        files.close()
    return {
        "allocations": count,
        "file_mib": round(files.db.stat().st_size / 2**20, 1),
        "cold_cycle_cpu_s": round(cold, 4),
        "change_cycle_cpu_ms": {
            "median": round(statistics.median(per_change) * 1000, 1),
            "max": round(max(per_change) * 1000, 1),
        },
        "rss_mib": round(rss_mib(), 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, action="append")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_cycle.json"))
    args = parser.parse_args()
    oracle = build_oracle()
    results = []
    for count in args.count or [1000, 65000]:
        # one process per size: the resident set is that size's alone
        with tempfile.TemporaryDirectory(prefix="ipamguard-cycle-") as tmp:
            if len(args.count or [1000, 65000]) > 1:
                out = subprocess.run(
                    [sys.executable, __file__, "--count", str(count), "--changes",
                     str(args.changes), "--out", os.path.join(tmp, "one.json")],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                results += json.loads(Path(tmp, "one.json").read_text())
                del out
            else:
                results.append(bench(count, args.changes, oracle, Path(tmp)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
