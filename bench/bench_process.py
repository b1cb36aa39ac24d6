"""The daemon as a process: its CPU per change of ipam.db and its resident set, against
the allocations held.

    .venv/bin/python bench/bench_process.py [--count 1000 --count 65000] [--changes 10]

bench_cycle.py times the reconcile cycle inside the bench's own process, whose resident
set also holds the bench (its imports, Go's oracle plumbing). This one starts the real
daemon, ``python -m ipamguard daemon --config ...`` with repair on, as systemd would
(NOTIFY_SOCKET; RUNTIME_DIRECTORY and STATE_DIRECTORY for its status file), against an
ipam.db that Go's bbolt writes as netavark does and the same stand-in for podman's API
(every container of the file running; an event stream that stays silent, so only
inotify wakes the daemon). After READY=1, each of ``--changes`` single-container changes
is made by Go's bbolt; the change's cost is the daemon's CPU time (every thread's
/proc/PID/task/*/schedstat, in ns) from before the change until its status file counts
one more cycle and the daemon has been quiet for QUIET seconds: inotify, the debounce,
the cycle, the status file, the link check when due. The resident set is VmRSS at the
end (and VmHWM, the peak). Every file lies on tmpfs (/dev/shm), as ipam.db and the
status file do in /run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from bench_cycle import prepare, status_kb  # noqa: E402
from notify import Notify  # noqa: E402
from oracle_tool import build_oracle  # noqa: E402

TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None
QUIET = 0.5  # seconds without CPU time of the daemon that end a change's measure


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (schedstat's first field)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended: its time is lost, a few µs
    return total


def cycles(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["cycles"])
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def settle(pid: int, state: Path, before: int, notify: Notify, timeout: float = 60.0) -> None:
    """Until the status file counts more than ``before`` cycles and the daemon is quiet
    (what it sends to NOTIFY_SOCKET is read meanwhile, as systemd would: a full queue
    would hold the daemon in sendto)."""
    deadline = time.monotonic() + timeout
    while cycles(state) <= before:
        if time.monotonic() > deadline:
            raise AssertionError(f"no cycle after {timeout} s")
        notify.drain()
        time.sleep(0.01)
    last, quiet_since = cpu_ns(pid), time.monotonic()
    while time.monotonic() - quiet_since < QUIET:
        notify.drain()
        time.sleep(0.05)
        now = cpu_ns(pid)
        if now != last:
            last, quiet_since = now, time.monotonic()


def bench(count: int, changes: int, oracle: Path, work: Path) -> dict[str, object]:
    files = prepare(count, oracle, work)
    config = work / "ipamguard.toml"
    config.write_text(files.config + '[log]\nformat = "json"\n')
    state = work / "run" / "state.json"
    notify = Notify(work)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify.path,
        "PYTHONPATH": str(REPO),
        "RUNTIME_DIRECTORY": str(work / "run"),
        "STATE_DIRECTORY": str(work / "state"),
    }
    env.pop("JOURNAL_STREAM", None)
    with (work / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ipamguard", "daemon", "--config", str(config)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        notify.wait_for("READY=1", timeout=300, proc=daemon)
        settle(daemon.pid, state, cycles(state) - 1, notify)
        cold_ns = cpu_ns(daemon.pid)
        per_change = []
        for n in range(changes):
            seen, before = cycles(state), cpu_ns(daemon.pid)
            files.add_one(count + n)
            settle(daemon.pid, state, seen, notify)
            per_change.append((cpu_ns(daemon.pid) - before) / 1e6)
        rss, hwm = status_kb(daemon.pid, "VmRSS"), status_kb(daemon.pid, "VmHWM")
    except BaseException:
        print((work / "daemon.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        daemon.terminate()
        daemon.wait(30)
        files.close()
        notify.close()
    return {
        "allocations": count,
        "file_mib": round(files.db.stat().st_size / 2**20, 1),
        "start_cpu_s": round(cold_ns / 1e9, 3),
        "change_cpu_ms": {
            "median": round(statistics.median(per_change), 1),
            "max": round(max(per_change), 1),
        },
        "rss_mb": round(rss * 1024 / 1e6, 1),
        "rss_mib": round(rss / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, action="append")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_process.json"))
    args = parser.parse_args()
    oracle = build_oracle()
    results = []
    for count in args.count or [1000, 65000]:
        # on tmpfs, as /run is: ipam.db (/run/containers/networks) and the status file
        with tempfile.TemporaryDirectory(prefix="ipamguard-process-", dir=TMPFS) as tmp:
            results.append(bench(count, args.changes, oracle, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
