"""After every reconcile: the status file, the persistent counters, the metrics file.

The service calls the ``Reporter`` (a ``CycleObserver``) in its event loop's
thread. It keeps the counters (loaded at start, saved when they change), the
last reconcile and the last one that succeeded, and rewrites the status file
(ipamguard.state) and, with ``[metrics] textfile`` set, the metrics file
(ipamguard.metrics). A file that cannot be written is logged once per distinct
error and noted in the status file; the daemon goes on.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from ipamguard import __version__
from ipamguard.capacity import SubnetCapacity
from ipamguard.config import Config
from ipamguard.daemon.cycle_api import CycleMeasures, CycleOutcome
from ipamguard.daemon.measures import REFUSAL_REASONS
from ipamguard.kinds import KINDS, RELEASABLE_KINDS
from ipamguard.metrics import MetricsSnapshot, write_textfile
from ipamguard.state import (
    load_counters,
    process_start,
    save_counters,
    write_state,
)

log = structlog.get_logger("ipamguard.report")


class Reporter:
    def __init__(
        self,
        config: Config,
        *,
        state_path: str,
        counters_path: str,
        user: bool = False,
        config_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.state_path = state_path
        self.counters_path = counters_path
        self.user = user
        self.config_path = config_path
        self._clock = clock
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.started_at = clock()
        self.counters, problem = load_counters(counters_path)
        if problem is not None:
            log.warning("counters start again from 0", problem=problem)
        for kind in sorted(RELEASABLE_KINDS):
            self.counters.releases.setdefault(kind, 0.0)
        for reason in REFUSAL_REASONS:
            self.counters.refusals.setdefault(reason, 0.0)
        self.podman_ok = True
        self.cycles = 0
        self.last: CycleOutcome | None = None
        self.last_success_at: float | None = None
        self.measures: CycleMeasures | None = None  # of the last reconcile that had them
        self.metrics_written_at: float | None = None
        self.metrics_error: str | None = None
        self._logged: dict[str, str] = {}  # what -> the error last logged for it

    # ----------------------------------------------------------------- CycleObserver

    def started(self) -> None:
        """Before the first reconcile: the status file says the daemon runs."""
        self._write_state(running=True)

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        self.config = outcome.config
        self.podman_ok = outcome.podman_ok
        self.cycles += 1
        self.last = outcome
        result = outcome.result
        if result is not None:
            self.last_success_at = outcome.started_at + outcome.seconds
            if result.measures is not None:
                self.measures = result.measures
                self._count(result.measures)
        self._publish()

    def podman_changed(self, reachable: bool) -> None:
        if reachable != self.podman_ok:
            self.podman_ok = reachable
            self._publish()

    def stopped(self) -> None:
        self._write_state(running=False)

    # ----------------------------------------------------------------- counters

    def _count(self, measures: CycleMeasures) -> None:
        changed = False
        for kind, n in measures.released.items():
            self.counters.releases[kind] = self.counters.releases.get(kind, 0.0) + n
            changed = changed or n > 0
        for reason, n in measures.refused.items():
            self.counters.refusals[reason] = self.counters.refusals.get(reason, 0.0) + n
            changed = changed or n > 0
        if measures.lock_hold_seconds is not None:
            self.counters.lock_hold_seconds = measures.lock_hold_seconds
            changed = True
        if changed:
            self._guarded("counters", save_counters, self.counters_path, self.counters)

    # ----------------------------------------------------------------- files

    def _publish(self) -> None:
        textfile = self.config.metrics.textfile
        if textfile is not None:
            if self._guarded("metrics", write_textfile, textfile, self.snapshot()):
                self.metrics_written_at = self._clock()
                self.metrics_error = None
            else:
                self.metrics_error = self._logged.get("metrics")
        self._write_state(running=True)

    def _write_state(self, running: bool) -> None:
        self._guarded("state", write_state, self.state_path, self.state(running))

    def _guarded(self, what: str, write: Callable[..., None], path: str, *args: Any) -> bool:
        """Run ``write(path, ...)``; an OSError is logged once (until it changes)."""
        try:
            write(path, *args)
        except OSError as error:
            text = f"{path}: {error.strerror or error}"
            if self._logged.get(what) != text:
                log.error(f"cannot write the {what} file", error=text, hint=_hint(what, error))
            self._logged[what] = text
            return False
        if what in self._logged:
            log.info(f"the {what} file is written again", path=path)
            del self._logged[what]
        return True

    # ----------------------------------------------------------------- documents

    def snapshot(self) -> MetricsSnapshot:
        """The metrics as of now."""
        last = self.last
        m = self.measures or CycleMeasures()
        findings = {(store, network, kind): 0 for store, network in m.networks for kind in KINDS}
        findings.update(m.findings)
        allocations: Counter[tuple[str, str]] = Counter()
        size: Counter[tuple[str, str]] = Counter()
        free: Counter[tuple[str, str]] = Counter()
        for c in m.subnets:  # a network in two stores: one series, summed
            allocations[(c.network, c.subnet)] += c.allocated
            size[(c.network, c.subnet)] += c.size
            free[(c.network, c.subnet)] += c.free
        return MetricsSnapshot(
            version=__version__,
            podman_reachable=self.podman_ok,
            repair_enabled=self.config.repair.enabled,
            resync_seconds=self.config.watch.resync_seconds,
            findings=findings,
            allocations=dict(allocations),
            subnet_addresses=dict(size),
            subnet_free=dict(free),
            releases=dict(self.counters.releases),
            refusals=dict(self.counters.refusals),
            cycle_seconds=last.seconds if last else None,
            last_cycle_timestamp=self.last_success_at,
            last_cycle_success=None if last is None else last.result is not None,
            lock_hold_seconds=self.counters.lock_hold_seconds,
            networkd_conflicts=m.networkd_conflicts,
            link_problems=m.link_problems,
        )

    def state(self, running: bool = True) -> dict[str, Any]:
        """The status file's document (see ipamguard.state)."""
        config = self.config
        percent = config.alerts.subnet_free_percent
        low = [c for c in (self.measures.subnets if self.measures else ()) if c.is_low(percent)]
        return {
            "version": 1,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "started_at": self.started_at,
            "updated_at": self._clock(),
            "running": running,
            "user": self.user,
            "config": self.config_path,
            "db": config.paths.db,
            "podman_url": config.podman.url,
            "repair_enabled": config.repair.enabled,
            "resync_seconds": config.watch.resync_seconds,
            "subnet_free_percent": percent,
            "podman_reachable": self.podman_ok,
            "cycles": self.cycles,
            "last_cycle": _cycle_document(self.last),
            "last_success_at": self.last_success_at,
            "low_subnets": [_low(c, percent) for c in low],
            "metrics": {
                "textfile": config.metrics.textfile,
                "written_at": self.metrics_written_at if config.metrics.textfile else None,
                "error": self.metrics_error if config.metrics.textfile else None,
            },
            "counters": {
                "releases": dict(sorted(self.counters.releases.items())),
                "refusals": dict(sorted(self.counters.refusals.items())),
            },
        }


def _cycle_document(outcome: CycleOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    document: dict[str, Any] = {
        "reason": outcome.reason,
        "started_at": outcome.started_at,
        "finished_at": outcome.started_at + outcome.seconds,
        "seconds": round(outcome.seconds, 6),
        "ok": outcome.result is not None,
        "error": outcome.error,
    }
    result = outcome.result
    if result is None:
        return document
    measures = result.measures or CycleMeasures()
    by_kind: Counter[str] = Counter()
    for (_, _, kind), n in measures.findings.items():
        by_kind[kind] += n
    document.update(
        summary=result.summary,
        networks=result.networks,
        allocations=result.allocations,
        open_findings=result.open_findings,
        repaired=result.repaired,
        findings={k: n for k, n in sorted(by_kind.items()) if n},
        released=dict(sorted(measures.released.items())),
        refused=dict(sorted(measures.refused.items())),
    )
    return document


def _low(capacity: SubnetCapacity, percent: float) -> dict[str, object]:
    return capacity.to_dict(percent)


def _hint(what: str, error: OSError) -> str | None:
    import errno

    if what != "metrics":
        return None
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            "the unit's sandbox is read-only outside its own directories: allow the "
            "directory in a drop-in (systemctl edit ipamguard: [Service] ReadWritePaths=DIR)"
        )
    if error.errno == errno.ENOENT:
        return "the directory does not exist (is node_exporter's textfile collector set up?)"
    return None
