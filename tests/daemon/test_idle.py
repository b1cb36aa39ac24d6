"""An idle daemon sleeps: no wake-ups but the watchdog's, and a small RSS.

The daemon runs in the sandbox with a real podman API (its event stream
connected) and a real journald; ``strace -f -c`` counts every system call of all
its threads for a few seconds. The reconcile is the recording stand-in
(recording_cycle.py): this measures the daemon's own machinery.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECONDS = 3
WATCHDOG_USEC = 2_000_000  # a ping every second


def daemon_pid(sandbox: Any, proc: subprocess.Popen[Any]) -> int:
    """Host pid of ``python -m daemon_with_cycle ...`` started by sandbox.popen."""
    for pid in sandbox.host_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daemon_with_cycle" in cmdline and b"nsenter" not in cmdline[0]:
            return pid
    raise AssertionError("daemon process not found")


def strace_counts(pid: int, seconds: int) -> dict[str, int]:
    """System calls of every thread of pid during ``seconds``: {name: calls}."""
    result = subprocess.run(
        ["timeout", "-s", "INT", str(seconds), "strace", "-f", "-c", "-p", str(pid)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    counts = {}
    for line in result.stderr.splitlines():
        fields = line.split()
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def test_idle_daemon_wakes_only_for_the_watchdog(sandbox: Any, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        if os.environ.get("CI"):
            pytest.fail("strace is missing (apt-get install strace)")
        pytest.skip("strace is missing")
    sandbox.start_journald()
    sandbox.start_podman_service()
    config = tmp_path / "ipamguard.toml"
    config.write_text("[watch]\nresync_seconds = 3600\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    proc = sandbox.popen(
        sys.executable, "-m", "daemon_with_cycle", "recording_cycle:make_cycle",
        "--config", str(config),
        env={
            "PYTHONPATH": f"{REPO}:{HERE}",
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        },
    )  # fmt: skip
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        pid = daemon_pid(sandbox, proc)
        counts = strace_counts(pid, SECONDS)
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    finally:
        sandbox.signal(proc, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        notify.close()
    print(f"idle {SECONDS}s: {sum(counts.values())} syscalls {counts}; RSS {rss_kb} kB; "
          f"{threads} threads")  # fmt: skip
    pings = SECONDS * 1_000_000 // (WATCHDOG_USEC // 2)
    # per ping: the loop wakes (epoll_wait x2), sends WATCHDOG=1 (poll + sendto)
    assert counts.get("sendto", 0) <= pings + 1
    assert counts.get("epoll_wait", 0) <= 2 * (pings + 1) + 1
    assert sum(counts.values()) <= 6 * (pings + 1), counts
    assert threads <= 3  # the loop, podman's event stream, one idle worker
    assert rss_kb < 40_000
