"""The daemon's overhead on podman itself: ``podman run --rm`` with the daemon off and on.

    sudo .venv/bin/python bench/bench_overhead.py [--sizes 200 --sizes 2000] [--runs 50]
        [--round-size 5] [--gap 0] [--podman 4.3|5.4] [--code HEAD|COMMIT|worktree]
        [--out bench/results/bench_overhead.json]

    quick: sudo .venv/bin/python bench/bench_overhead.py --sizes 200 --runs 20

The daemon runs the ipamguard of --code: by default HEAD, checked out as a git worktree
under /tmp (removed afterwards), so that what is measured does not change while others
edit this work tree; the sandbox's Python runs it with PYTHONPATH pointing there.

For each size N, a fresh test sandbox (tests/e2e/sandbox.py: real podman of the chosen
flavour, its API service and journald, in private namespaces) holds N existing
containers: 50 running ``sleep`` on a custom network NET (25 with a static address, 25
with a dynamic one: they hold ipam.db's allocations) and N - 50 made by ``podman create
--network NET`` (podman's database; no address until started). Then ``podman run --rm
--network NET localhost/bb true`` is timed (wall time around the command, as the host
sees it: nsenter's ~5 ms included on both sides) --runs times with the daemon off and
--runs times with it on (``ipamguard daemon``, repair on, grace 0, default debounce),
in rounds of --round-size runs that alternate off/on, the order flipping each round
(off-on, on-off, ...) so that drift (the load of other work on the machine) falls on
both alike. The daemon is started for each "on" block and stopped after it; it is
ready (READY=1 on its NOTIFY_SOCKET) and quiet before the block's first run.

Reported per size:
- median and p90 wall time per run, off and on;
- the overhead in % (goal <= 2 %): of the medians, with a bootstrap 95 % interval; the
  median over rounds of each round's on/off ratio of medians (drift between rounds does
  not reach it); of the p90s;
- the daemon's CPU seconds per run: utime+stime from /proc/PID/stat before each "on"
  block and after it, once the daemon is quiet again, summed, divided by the runs;
- its reconcile cycles per run (its status file), its VmRSS/VmHWM, its start-up CPU
  (interpreter, imports and the full look at start: not counted per run);
- the podman API service's CPU per run, off and on (the answers the daemon asks for and
  its event stream cost podman that);
- the leaks the daemon found and released (0 expected: every allocation belongs to a
  live container); the load average over each size.

Runs follow each other at once by default: the daemon's debounce (0.25 s, at most
2.5 s after the first trigger of a burst) then folds the triggers of several runs into
one reconcile, which may overlap the next run. ``--gap 0.5`` pauses (untimed, off and on
alike) before each run, so that each run gets reconciles of its own: the daemon's CPU
per isolated podman operation. A focused reconcile asks podman's API only about the
containers that no local source (runtime state, processes) sees: back to back, a
reconcile may catch the next run's container in transit. On podman 4.3 that question
(a list filtered by ID) costs the API service CPU in proportion to all its containers
(~0.45 s at 2,000).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from notify import Notify  # noqa: E402
from sandbox import IMAGE, IPAM_DB, Sandbox  # noqa: E402

from ipamguard import messages  # noqa: E402

NET, SUBNET = "bench", "10.90.0.0/16"
RUNNING = 50  # of the N containers: running on NET, half with a static address
CONFIG = "[repair]\nenabled = true\ngrace_seconds = 0\n"  # default debounce (0.25 s)
STATUS_FILE = "/run/ipamguard/state.json"
RUN = ("run", "--rm", "--network", NET, IMAGE, "true")
WARMUP = 3


# ----------------------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def child_of(pid: int, timeout: float = 5.0) -> int:
    """The one child of pid (nsenter's: the command it entered the sandbox to run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if found:
            return found[0]
        time.sleep(0.02)
    raise SystemExit(f"no child of {pid} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def wait_quiet(pid: int, quiet: float = 1.0, timeout: float = 30.0) -> float:
    """Wait until pid's CPU time has not moved for `quiet` seconds; return it."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet:
        if time.monotonic() > deadline:
            raise SystemExit(f"pid {pid} is still busy after {timeout}s")
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now != last:
            last, still_since = now, time.monotonic()
    return last


def service(sb: Sandbox) -> int:
    """Host pid of podman's API service (``podman system service``) in the sandbox."""
    for pid in sb.host_pids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"podman") and b"service" in argv:
                return pid
    raise SystemExit("podman's API service not found")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------- daemon


@dataclass
class DaemonTotals:
    cpu_s: float = 0.0
    runs: int = 0
    cycles: int = 0
    startup_cpu_s: list[float] = field(default_factory=list)
    memory: list[dict[str, float]] = field(default_factory=list)


def status_cycles(sb: Sandbox) -> int:
    document = json.loads(sb.host_path(STATUS_FILE).read_text())
    return int(document["cycles"])


@contextmanager
def daemon(
    sb: Sandbox, code: Path, conf: Path, notify: Notify, totals: DaemonTotals
) -> Iterator[int]:
    """The daemon (the ipamguard of `code`), started, ready and quiet: its host pid.

    Stopped (SIGTERM) afterwards."""
    env = {"NOTIFY_SOCKET": notify.path, "PYTHONPATH": str(code)}
    proc = sb.ipamguard_popen("daemon", "--config", str(conf), env=env)
    try:
        notify.drain()
        notify.received.clear()  # a READY=1 of the daemon before, if any
        try:
            notify.wait_for("READY=1", timeout=120.0, proc=proc)
        except AssertionError as error:
            raise SystemExit(str(error)) from None
        pid = child_of(proc.pid)
        totals.startup_cpu_s.append(wait_quiet(pid))
        yield pid
    finally:
        if proc.poll() is None:
            sb.signal(proc, signal.SIGTERM)
            proc.wait(30)
    if proc.returncode != 0:
        raise SystemExit(f"the daemon exited with {proc.returncode}")


# ----------------------------------------------------------------------------- code


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The ipamguard to measure: a git worktree of rev under /tmp (seen from inside the
    sandbox), removed afterwards; rev "worktree": this work tree as it is (others' edits
    included, and changing while it runs)."""
    if rev == "worktree":
        dirty = git("status", "--porcelain", "--", "ipamguard").splitlines()
        yield REPO, {"rev": rev, "commit": git("rev-parse", "HEAD"), "dirty": dirty}
        return
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(tempfile.gettempdir()) / f"ipamguard-overhead-{commit[:12]}-{os.getpid()}"
    git("worktree", "add", "--detach", str(path), commit)
    try:
        subject = git("log", "-1", "--format=%s", commit)[:160]
        yield path, {"rev": rev, "commit": commit, "subject": subject}
    finally:
        git("worktree", "remove", "--force", str(path))


def check_code(sb: Sandbox, code: Path) -> None:
    """The sandbox's Python imports ipamguard from `code`."""
    where = sb.run(
        sb.python, "-c", "import ipamguard; print(ipamguard.__file__)",
        env={"PYTHONPATH": str(code)},
    ).stdout.strip()  # fmt: skip
    if not where.startswith(f"{code}/"):
        raise SystemExit(f"ipamguard imported from {where}, not from {code}")


# ----------------------------------------------------------------------------- bench


def populate(sb: Sandbox, total: int) -> float:
    """RUNNING containers running on NET (half static), total - RUNNING created on NET."""
    started = time.monotonic()
    half = RUNNING // 2
    script = f"""set -eu
        i=0
        while [ $i -lt {half} ]; do
            podman run -d --name run-static-$i --network {NET}:ip=10.90.1.$((10 + i)) \\
                {IMAGE} sleep 1000000 >/dev/null
            podman run -d --name run-dynamic-$i --network {NET} {IMAGE} sleep 1000000 >/dev/null
            i=$((i + 1))
        done
        i=0
        while [ $i -lt {total - 2 * half} ]; do
            podman create --name created-$i --network {NET} {IMAGE} true >/dev/null
            i=$((i + 1))
        done
    """
    sb.run("sh", "-c", script, timeout=3600)
    listed = sb.podman("ps", "-a", "-q").stdout.split()
    if len(listed) != total:
        raise SystemExit(f"{len(listed)} containers instead of {total}")
    return time.monotonic() - started


def time_runs(sb: Sandbox, count: int, gap: float = 0.0) -> list[float]:
    out = []
    for _ in range(count):
        time.sleep(gap)
        started = time.monotonic()
        sb.podman(*RUN)
        out.append(time.monotonic() - started)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(values), 4),
        "p90_s": round(p90(values), 4),
        "mean_s": round(statistics.fmean(values), 4),
        "min_s": round(min(values), 4),
        "max_s": round(max(values), 4),
        "all_s": [round(v, 4) for v in values],
    }


def overhead_ci(off: list[float], on: list[float], draws: int = 2000) -> tuple[float, float]:
    """Bootstrap 95 % interval of the overhead of the medians, in %."""
    rng = random.Random(20261125)
    found = []
    for _ in range(draws):
        a = statistics.median(rng.choices(off, k=len(off)))
        b = statistics.median(rng.choices(on, k=len(on)))
        found.append((b / a - 1) * 100)
    found.sort()
    return round(found[int(0.025 * draws)], 2), round(found[int(0.975 * draws) - 1], 2)


def bench_size(
    flavour: str, code: Path, total: int, runs: int, round_size: int, gap: float
) -> dict[str, Any]:
    loads = [load1()]
    with (
        Sandbox(podman=flavour) as sb,
        tempfile.TemporaryDirectory(prefix="ipamguard-overhead-", dir="/tmp") as tmp,
    ):
        sb.network_create(NET, SUBNET)
        sb.start_podman_service()
        sb.start_journald()
        service_pid = service(sb)
        check_code(sb, code)
        populate_s = populate(sb, total)
        print(f"  {total} containers in {populate_s:.0f} s (load {load1()})", flush=True)
        conf = Path(tmp) / "ipamguard.toml"
        conf.write_text(CONFIG)
        notify = Notify(Path(tmp))
        time_runs(sb, WARMUP)
        off: list[float] = []
        on: list[float] = []
        service_cpu = {"off": 0.0, "on": 0.0}
        totals = DaemonTotals()
        paired: list[float] = []  # per round: median on / median off - 1
        rounds = -(-runs // round_size)
        for r in range(rounds):
            n = min(round_size, runs - r * round_size)
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                loads.append(load1())
                if mode == "off":
                    before = cpu_seconds(service_pid)
                    off += time_runs(sb, n, gap)
                    service_cpu["off"] += wait_quiet(service_pid, quiet=0.5) - before
                    continue
                with daemon(sb, code, conf, notify, totals) as pid:
                    cycles = status_cycles(sb)
                    before, service_before = cpu_seconds(pid), cpu_seconds(service_pid)
                    on += time_runs(sb, n, gap)
                    totals.cpu_s += wait_quiet(pid) - before
                    service_cpu["on"] += wait_quiet(service_pid, quiet=0.5) - service_before
                    totals.runs += n
                    totals.cycles += status_cycles(sb) - cycles
                    totals.memory.append(memory_mib(pid))
            paired.append(statistics.median(on[-n:]) / statistics.median(off[-n:]) - 1)
            print(f"  round {r + 1}/{rounds}: off {len(off)}, on {len(on)}", flush=True)
        notify.close()
        found = sb.journal_entries(MESSAGE_ID=messages.LEAK_FOUND)
        released = sb.journal_entries(MESSAGE_ID=messages.LEAK_RELEASED)
        dump = json.loads(sb.ipamguard("dump", "--json", env={"PYTHONPATH": str(code)}).stdout)
        allocations = sum(len(s["allocations"]) for n in dump["networks"] for s in n["subnets"])
        db_bytes = sb.host_path(IPAM_DB).stat().st_size
        version = ".".join(map(str, sb.podman_version))
    loads.append(load1())
    off_summary, on_summary = summary(off), summary(on)
    return {
        "containers": total,
        "running": RUNNING,
        "allocations_at_end": allocations,
        "ipam_db_bytes": db_bytes,
        "podman_version": version,
        "populate_s": round(populate_s, 1),
        "runs_per_mode": runs,
        "round_size": round_size,
        "gap_s": gap,
        "off": off_summary,
        "on": on_summary,
        "overhead_pct": {
            "median": round((on_summary["median_s"] / off_summary["median_s"] - 1) * 100, 2),
            "median_ci95": overhead_ci(off, on),
            "p90": round((on_summary["p90_s"] / off_summary["p90_s"] - 1) * 100, 2),
            "mean": round((on_summary["mean_s"] / off_summary["mean_s"] - 1) * 100, 2),
            "paired_rounds_median": round(statistics.median(paired) * 100, 2),
            "paired_rounds": [round(p * 100, 2) for p in paired],
        },
        "daemon": {
            "cpu_s_per_run": round(totals.cpu_s / totals.runs, 5),
            "cpu_s_total": round(totals.cpu_s, 3),
            "cycles_per_run": round(totals.cycles / totals.runs, 2),
            "startup_cpu_s_median": round(statistics.median(totals.startup_cpu_s), 3),
            "vm_rss_mib_max": max(m["VmRSS"] for m in totals.memory),
            "vm_hwm_mib_max": max(m["VmHWM"] for m in totals.memory),
            "starts": len(totals.startup_cpu_s),
            "leaks_found": len(found),
            "leaks_released": len(released),
        },
        "podman_service_cpu_s_per_run": {
            "off": round(service_cpu["off"] / len(off), 5),
            "on": round(service_cpu["on"] / len(on), 5),
        },
        "load1": {"start": loads[0], "end": loads[-1], "max": max(loads), "all": loads},
    }


def table(results: list[dict[str, Any]]) -> str:
    columns = [
        "containers",
        "run --rm off: median / p90",
        "on: median / p90",
        "overhead: median (95 % CI) / paired rounds / p90",
        "daemon CPU per run",
        "cycles per run",
        "daemon RSS (HWM)",
        "API service CPU per run: off / on",
        "load1",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in results:
        off, on, o = r["off"], r["on"], r["overhead_pct"]
        d, s, load = r["daemon"], r["podman_service_cpu_s_per_run"], r["load1"]
        low, high = o["median_ci95"]
        cells = [
            f"{r['containers']:,}",
            f"{off['median_s'] * 1000:.0f} / {off['p90_s'] * 1000:.0f} ms",
            f"{on['median_s'] * 1000:.0f} / {on['p90_s'] * 1000:.0f} ms",
            f"{o['median']:+.1f} % ({low:+.1f} .. {high:+.1f}) / "
            f"{o['paired_rounds_median']:+.1f} % / {o['p90']:+.1f} %",
            f"{d['cpu_s_per_run'] * 1000:.1f} ms",
            f"{d['cycles_per_run']:.2f}",
            f"{d['vm_rss_mib_max']:.0f} MiB ({d['vm_hwm_mib_max']:.0f})",
            f"{s['off'] * 1000:.1f} / {s['on'] * 1000:.1f} ms",
            f"{load['start']:.1f} .. {load['max']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, action="append", help="default: 200 and 2000")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per mode and size")
    parser.add_argument("--round-size", type=int, default=5, help="runs per off or on block")
    parser.add_argument(
        "--gap", type=float, default=0.0, help="seconds of pause before each run (not timed)"
    )
    parser.add_argument("--podman", choices=("4.3", "5.4"), default="4.3")
    parser.add_argument(
        "--code", default="HEAD",
        help="the ipamguard to run: a commit (checked out in a worktree; default HEAD) "
        "or 'worktree' (this work tree, as others edit it)",
    )  # fmt: skip
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_overhead.json"))
    args = parser.parse_args()
    sizes = args.sizes or [200, 2000]
    if min(sizes) < RUNNING:
        parser.error(f"--sizes: at least {RUNNING} (the running containers)")
    if os.geteuid() != 0:
        parser.error("needs root (the test sandbox)")
    started = time.monotonic()
    results = []
    with checkout(args.code) as (code, version):
        for total in sizes:
            print(f"{total} containers, podman {args.podman}, ipamguard {version['commit'][:12]}")
            results.append(
                bench_size(args.podman, code, total, args.runs, args.round_size, args.gap)
            )
    document = {
        "bench": "bench_overhead",
        "ipamguard": version,
        "flavour": args.podman,
        "command": "podman " + " ".join(RUN),
        "daemon_config": CONFIG,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - started, 1),
        "sizes": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(table(results))
    print(f"({document['seconds']:.0f} s; JSON: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
