"""The daemon's latency, idle cost and memory, against a real podman (needs root).

    sudo .venv/bin/python bench/bench_daemon.py [--leaks 10] [--idle 10]

In the test sandbox (tests/e2e/sandbox.py: private namespaces, real podman,
podman API service, journald) with repair on and grace 0:
- latency: a leak is staged as in the field report (run --ip, copy ipam.db
  aside, podman rm, copy it back); from the moment the leaked file is back to
  the journal's LEAK_RELEASED entry (journald's own timestamp);
- idle: CPU seconds and context switches of the daemon over --idle seconds
  with nothing happening (no busy loop: only watchdog and resync wake it);
- memory: VmRSS and VmHWM of the daemon process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from sandbox import IPAM_DB, Sandbox  # noqa: E402

from ipamguard import messages  # noqa: E402

CONFIG = "[repair]\nenabled = true\ngrace_seconds = 0\n"  # default debounce (0.25 s)


def daemon_pid(nsenter_pid: int) -> int:
    """The daemon's host pid: the python child of the nsenter that started it."""
    for _ in range(100):
        children = Path(f"/proc/{nsenter_pid}/task/{nsenter_pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise SystemExit("daemon process not found")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> int:
    s = status(pid)
    return int(s["voluntary_ctxt_switches"]) + int(s["nonvoluntary_ctxt_switches"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaks", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_daemon.json"))
    args = parser.parse_args()
    with Sandbox() as sb, tempfile.TemporaryDirectory(prefix="ipamguard-bench-") as tmp:
        sb.network_create("a", "172.19.10.0/24")
        sb.start_podman_service()
        sb.start_journald()
        conf = Path(tmp) / "ipamguard.toml"
        conf.write_text(CONFIG)
        proc = sb.ipamguard_popen("daemon", "--config", str(conf))
        pid = daemon_pid(proc.pid)
        sb.wait_journal(timeout=30, MESSAGE_ID=messages.DAEMON_STARTED)
        db = sb.host_path(IPAM_DB)
        latencies = []
        for i in range(args.leaks):
            ip = f"172.19.10.{10 + i}"
            cid = sb.podman(
                "run", "-d", "--network", f"a:ip={ip}", "localhost/bb", "sleep", "600"
            ).stdout.strip()
            saved = Path(tmp) / "ipam.db"
            shutil.copyfile(db, saved)
            sb.podman("rm", "-f", "-t0", cid)
            sb.write_file(IPAM_DB, saved.read_bytes())
            leaked_at = time.time()
            deadline = time.monotonic() + 20
            entry = None
            while entry is None and time.monotonic() < deadline:
                found = sb.journal_entries(
                    MESSAGE_ID=messages.LEAK_RELEASED, IPAMGUARD_CONTAINER_ID=cid
                )
                entry = found[0] if found else None
                time.sleep(0.05)
            if entry is None:
                raise SystemExit(f"leak {ip} was not released")
            latencies.append(int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - leaked_at)
        time.sleep(2)
        cpu0, sw0 = cpu_seconds(pid), switches(pid)
        time.sleep(args.idle)
        cpu1, sw1 = cpu_seconds(pid), switches(pid)
        memory = status(pid)
        result = {
            "latency_s": {
                "median": statistics.median(latencies),
                "max": max(latencies),
                "all": latencies,
            },
            "idle": {
                "seconds": args.idle,
                "cpu_seconds": round(cpu1 - cpu0, 4),
                "context_switches": sw1 - sw0,
            },
            "vm_rss": memory["VmRSS"].strip(),
            "vm_hwm": memory["VmHWM"].strip(),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
