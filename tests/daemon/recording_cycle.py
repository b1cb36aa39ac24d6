"""A stand-in for the lead's reconcile cycle (ipamguard/daemon/cycle.py), for tests only.

It reads nothing and releases nothing: it records when and why the service ran it
(and with which configuration), optionally takes some time or fails, and returns
a fixed ``CycleResult``. It stands in for the reconcile logic only; everything
around it (service, schedule, triggers, sd_notify, logging) is the real code.

In a subprocess (``python -m daemon_with_cycle recording_cycle:make_cycle ...``
with this directory on PYTHONPATH) it is steered by environment variables:
IPAMGUARD_TEST_RECORD (a JSON-lines file, one line per run), and optionally
IPAMGUARD_TEST_CYCLE_SECONDS (how long a run takes).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

from ipamguard.config import Config
from ipamguard.daemon.cycle_api import CycleResult


@dataclass
class Run:
    reason: str
    start: float  # time.monotonic()
    end: float
    config: Config
    thread: str


@dataclass
class RecordingCycle:
    """Records every run; ``seconds``: how long a run takes; ``fail``: raise this."""

    seconds: float = 0.0
    record_path: str | None = None
    fail: BaseException | None = None
    recheck_after: float | None = None
    podman_ok: bool = True
    runs: list[Run] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, reason: str, config: Config, focus: frozenset[str] | None = None) -> CycleResult:
        start = time.monotonic()
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.seconds:
                time.sleep(self.seconds)
            if self.fail is not None:
                raise self.fail
        finally:
            with self._lock:
                self.running -= 1
            self._record(
                Run(reason, start, time.monotonic(), config, threading.current_thread().name)
            )
        return CycleResult(
            networks=2,
            allocations=5,
            open_findings=len(self.runs) % 2,
            repaired=0,
            podman_ok=self.podman_ok,
            repair_enabled=config.repair.enabled,
            recheck_after=self.recheck_after,
        )

    def _record(self, run: Run) -> None:
        self.runs.append(run)
        if self.record_path:
            line = {
                "reason": run.reason,
                "start": run.start,
                "end": run.end,
                "repair_enabled": run.config.repair.enabled,
                "grace_seconds": run.config.repair.grace_seconds,
                "log_level": run.config.log.level,
            }
            with open(self.record_path, "a") as f:
                f.write(json.dumps(line) + "\n")


def make_cycle() -> RecordingCycle:
    """The factory that ``daemon_with_cycle recording_cycle:make_cycle`` calls."""
    return RecordingCycle(
        seconds=float(os.environ.get("IPAMGUARD_TEST_CYCLE_SECONDS", "0")),
        record_path=os.environ.get("IPAMGUARD_TEST_RECORD"),
    )
