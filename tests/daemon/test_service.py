"""The service's loop in-process: debounce, one reconcile at a time, resync, reload, stop.

The reconcile is the recording stand-in (recording_cycle.py); the schedule,
notifier calls, logging, signals-as-requests and the threads are the real ones.
Intervals are scaled down to tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from ipamguard import messages
from ipamguard.config import Config, WatchConfig, parse_config
from ipamguard.daemon import service as service_module
from ipamguard.daemon.service import Service
from ipamguard.daemon.triggers import Push, Trigger
from ipamguard.errors import ConfigError, LockTimeout, PodmanUnavailable

from .recording_cycle import RecordingCycle

FAST = Config(watch=WatchConfig(resync_seconds=60.0, debounce_seconds=0.05))
DB = Trigger("db-changed", None, "IN_MODIFY ipam.db")


@dataclass
class Notes:
    """A stand-in for sd_notify: what would have gone to systemd, with times."""

    sent: list[tuple[float, dict[str, str | int]]] = field(default_factory=list)

    def notify(self, **fields: str | int) -> bool:
        self.sent.append((time.monotonic(), fields))
        return True

    def keys(self) -> list[str]:
        return [key for _, fields in self.sent for key in fields]

    def values(self, key: str) -> list[str | int]:
        return [fields[key] for _, fields in self.sent if key in fields]


@dataclass
class FakeSource:
    """A trigger source the test drives: ``push`` is the service's."""

    push: Push | None = None
    started: int = 0
    stopped: int = 0

    def start(self, loop: asyncio.AbstractEventLoop, push: Push) -> None:
        self.push = push
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1


@dataclass
class Harness:
    service: Service
    cycle: RecordingCycle
    notes: Notes
    source: FakeSource
    configs: list[Config]

    def push(self, trigger: Trigger = DB) -> None:
        """From another thread, as the real sources do."""
        assert self.source.push is not None
        thread = threading.Thread(target=self.source.push, args=(trigger,))
        thread.start()
        thread.join()

    def reasons(self) -> list[str]:
        return [run.reason for run in self.cycle.runs]


Scenario = Callable[[Harness], Coroutine[Any, Any, None]]


def run_service(
    scenario: Scenario,
    config: Config = FAST,
    cycle: RecordingCycle | None = None,
    load_config: Callable[[], Config] | None = None,
    watchdog_seconds: float | None = None,
) -> tuple[Harness, int, list[dict[str, Any]]]:
    """Run the service with ``scenario`` alongside; the scenario ends by stopping it."""
    source = FakeSource()
    harness = Harness(
        service=None,  # type: ignore[arg-type]
        cycle=cycle or RecordingCycle(),
        notes=Notes(),
        source=source,
        configs=[],
    )
    harness.service = Service(
        harness.cycle,
        config,
        load_config=load_config or (lambda: config),
        make_sources=lambda c: [source],
        notifier=harness.notes,
        watchdog_seconds=watchdog_seconds,
        on_config=harness.configs.append,
    )

    async def main() -> int:
        task = asyncio.create_task(harness.service.run())
        while not harness.cycle.runs and not task.done():
            await asyncio.sleep(0.005)
        await scenario(harness)
        return await asyncio.wait_for(task, 10)

    with capture_logs() as logs:
        code = asyncio.run(main())
    return harness, code, logs


def ids(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["message_id"] for entry in logs if entry.get("message_id")]


async def stop_after(harness: Harness, seconds: float) -> None:
    await asyncio.sleep(seconds)
    harness.service.request_stop("SIGTERM")


def test_start_ready_status_and_stop() -> None:
    async def scenario(h: Harness) -> None:
        await stop_after(h, 0.1)

    h, code, logs = run_service(scenario)
    assert code == 0
    assert h.reasons() == ["start"]
    assert h.cycle.runs[0].thread != threading.main_thread().name  # a worker thread
    assert h.notes.keys() == ["READY", "STATUS", "STOPPING"]
    assert h.notes.values("STATUS") == ["2 networks, 5 allocations, 1 open finding, repair off"]
    assert ids(logs) == [messages.DAEMON_STARTED, messages.DAEMON_STOPPING]
    assert (h.source.started, h.source.stopped) == (1, 1)


def test_a_burst_of_triggers_is_one_reconcile() -> None:
    async def scenario(h: Harness) -> None:
        for _ in range(20):
            h.push()
            await asyncio.sleep(0.002)
        await stop_after(h, 0.3)

    h, _, _ = run_service(scenario)
    assert h.reasons() == ["start", "db-changed: IN_MODIFY ipam.db (+19 more)"]
    # ...after the quiet period, not at the first trigger
    assert h.cycle.runs[1].start - h.cycle.runs[0].end >= 0.05


def test_a_burst_wakes_the_sleeping_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers on the loop's thread (inotify's) are taken at once, without the
    cross-thread hand-off; within a burst only the first one wakes the loop, the
    later ones only move the due time (the loop finds it moved when it wakes)."""
    wakes: list[float] = []
    wakeup = Service._wakeup

    def counted(self: Service) -> None:
        wakes.append(time.monotonic())
        wakeup(self)

    monkeypatch.setattr(Service, "_wakeup", counted)
    seen: list[int] = []

    async def scenario(h: Harness) -> None:
        await asyncio.sleep(0.02)  # asleep until the resync
        assert h.source.push is not None
        for _ in range(10):
            h.source.push(DB)  # on the loop thread, as inotify's reader is
            seen.append(len(wakes))
            await asyncio.sleep(0.01)  # each within the debounce of the one before
        await asyncio.sleep(0.5)
        h.push()  # from another thread, after the burst's reconcile: wakes it
        await stop_after(h, 0.5)

    slow = replace(FAST, watch=WatchConfig(resync_seconds=60.0, debounce_seconds=0.2))
    h, _, _ = run_service(scenario, slow)
    assert seen == [1] * 10  # one wake for the burst, taken at once
    assert h.reasons() == [
        "start", "db-changed: IN_MODIFY ipam.db (+9 more)", "db-changed: IN_MODIFY ipam.db"
    ]  # fmt: skip
    # the debounce counts from the burst's last trigger, not from the wake
    assert h.cycle.runs[1].start - wakes[0] >= 0.09 + 0.2


def test_never_two_at_once_and_exactly_one_more_after() -> None:
    async def scenario(h: Harness) -> None:
        h.push()
        await asyncio.sleep(0.1)  # the second reconcile runs (0.3 s)
        assert h.cycle.running == 1
        for _ in range(5):
            h.push(Trigger("podman-event", "c" * 64, "container remove web"))
            await asyncio.sleep(0.02)
        await stop_after(h, 0.7)

    h, _, _ = run_service(scenario, cycle=RecordingCycle(seconds=0.3))
    assert h.reasons() == [
        "start",
        "db-changed: IN_MODIFY ipam.db",
        "podman-event: container remove web (+4 more)",
    ]
    assert h.cycle.max_running == 1
    runs = h.cycle.runs
    assert runs[2].start >= runs[1].end


def test_periodic_resync_and_nothing_else_when_idle() -> None:
    async def scenario(h: Harness) -> None:
        await stop_after(h, 0.55)

    config = replace(FAST, watch=WatchConfig(resync_seconds=0.2, debounce_seconds=0.05))
    h, _, _ = run_service(scenario, config)
    assert h.reasons() == ["start", "resync", "resync"]
    gaps = [b.start - a.end for a, b in zip(h.cycle.runs, h.cycle.runs[1:], strict=False)]
    assert all(0.19 <= gap < 0.3 for gap in gaps), gaps


def test_the_cycle_asks_for_a_recheck() -> None:
    async def scenario(h: Harness) -> None:
        await asyncio.sleep(0.25)
        h.cycle.recheck_after = None
        await stop_after(h, 0.2)

    h, _, _ = run_service(scenario, cycle=RecordingCycle(recheck_after=0.1))
    assert h.reasons()[:3] == ["start", "recheck", "recheck"]
    assert len(h.reasons()) <= 4


def test_reload_with_a_good_config() -> None:
    new = parse_config(
        "[repair]\nenabled = true\n[podman]\nurl = 'unix:///other.sock'\n"
        "[watch]\ndebounce_seconds = 0.05\n"
    )

    async def scenario(h: Harness) -> None:
        h.service.request_reload()
        await stop_after(h, 0.2)

    h, _, logs = run_service(scenario, load_config=lambda: new)
    assert h.reasons() == ["start", "configuration reloaded"]
    assert h.cycle.runs[1].config == new
    assert h.configs == [new]  # logging is reconfigured through on_config
    assert (h.source.started, h.source.stopped) == (2, 2)  # podman URL changed
    assert h.notes.keys() == [
        "READY", "STATUS", "RELOADING", "MONOTONIC_USEC", "READY", "STATUS", "STATUS", "STOPPING",
    ]  # fmt: skip
    assert h.notes.values("STATUS")[-1].endswith("repair on")  # type: ignore[union-attr]
    reloaded = [e for e in logs if e.get("message_id") == messages.CONFIG_RELOADED]
    assert reloaded[0]["changes"] == (
        "[repair] enabled: false -> true; "
        "[podman] url: (podman's) -> 'unix:///other.sock'; "
        "[watch] resync_seconds: 60.0 -> 300.0"
    )


def test_reload_with_a_bad_config_keeps_the_old_one() -> None:
    def bad() -> Config:
        raise ConfigError("ipamguard.toml: [repair] grace_seconds: expected a non-negative number")

    async def scenario(h: Harness) -> None:
        h.service.request_reload()
        await asyncio.sleep(0.05)
        h.push()
        await stop_after(h, 0.2)

    h, code, logs = run_service(scenario, load_config=bad)
    assert code == 0
    assert h.service.config == FAST
    assert [run.config for run in h.cycle.runs] == [FAST, FAST]
    rejected = [e for e in logs if e.get("message_id") == messages.CONFIG_REJECTED]
    assert rejected[0]["error"].endswith("expected a non-negative number")
    assert rejected[0]["log_level"] == "error"
    assert h.notes.keys()[2:5] == ["RELOADING", "MONOTONIC_USEC", "READY"]  # done, still ready
    assert h.source.started == 1


def test_stop_waits_for_the_running_reconcile() -> None:
    stop_requested = 0.0

    async def scenario(h: Harness) -> None:
        nonlocal stop_requested
        h.push()
        await asyncio.sleep(0.15)  # the second reconcile (0.4 s) runs
        h.push()  # ignored: stopping
        stop_requested = time.monotonic()
        h.service.request_stop("SIGTERM")
        h.service.request_stop("SIGINT")  # a second signal changes nothing

    h, code, logs = run_service(scenario, cycle=RecordingCycle(seconds=0.4))
    stopped = time.monotonic()
    assert code == 0
    assert h.reasons() == ["start", "db-changed: IN_MODIFY ipam.db"]
    assert h.cycle.runs[-1].end > stop_requested  # it was finished, not abandoned
    assert stopped - stop_requested < 1.0
    stopping_sent = next(t for t, fields in h.notes.sent if "STOPPING" in fields)
    assert stopping_sent - stop_requested < 0.05  # STOPPING=1 at once
    stopping = [e for e in logs if e.get("message_id") == messages.DAEMON_STOPPING]
    assert len(stopping) == 1 and stopping[0]["event"] == "stopping after the running reconcile"
    assert h.source.stopped == 1


def test_watchdog_pings_and_a_hung_reconcile_stops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "CYCLE_STUCK_SECONDS", 0.3)

    async def scenario(h: Harness) -> None:
        await asyncio.sleep(0.3)
        h.cycle.seconds = 0.8  # the next reconcile hangs for a while
        h.push()
        await stop_after(h, 1.0)

    h, _, logs = run_service(scenario, watchdog_seconds=0.1, cycle=RecordingCycle())
    pings = [t for t, fields in h.notes.sent if "WATCHDOG" in fields]
    hung = h.cycle.runs[1]
    before = [t for t in pings if t < hung.start]
    assert len(before) >= 4  # every 0.05 s
    assert all(b - a < 0.1 for a, b in itertools.pairwise(before))
    silent = [t for t in pings if hung.start + 0.35 < t < hung.end]
    assert silent == []
    assert [t for t in pings if t > hung.end]  # back once it returned
    assert any("hangs" in e["event"] for e in logs)


def test_podman_down_and_up_are_logged_once() -> None:
    async def scenario(h: Harness) -> None:
        h.push(Trigger("podman-down", None, "connection refused"))
        h.push(Trigger("podman-down", None, "connection refused"))
        await asyncio.sleep(0.2)
        h.push(Trigger("podman-up", None, "event stream reconnected"))
        await stop_after(h, 0.2)

    h, _, logs = run_service(scenario)
    assert ids(logs) == [
        messages.DAEMON_STARTED,
        messages.PODMAN_UNREACHABLE,
        messages.PODMAN_RECONNECTED,
        messages.DAEMON_STOPPING,
    ]
    assert h.reasons() == ["start", "podman-up: event stream reconnected"]  # a resync
    statuses = h.notes.values("STATUS")
    assert statuses[1].endswith("1 open finding, repair off, podman unreachable")


def test_failed_reconciles_are_logged_once_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "RETRY_AFTER_FAILURE", 0.1)
    cycle = RecordingCycle(fail=LockTimeout("/run/lock/netavark.lock is locked by pid 7"))

    async def scenario(h: Harness) -> None:
        await asyncio.sleep(0.25)
        h.cycle.fail = RuntimeError("a bug")
        await asyncio.sleep(0.1)
        h.cycle.fail = PodmanUnavailable("podman API: connection refused")
        await asyncio.sleep(0.1)
        h.cycle.fail = None
        await stop_after(h, 0.15)

    h, code, logs = run_service(scenario, cycle=cycle)
    assert code == 0
    assert h.reasons()[:3] == ["start", "recheck", "recheck"]
    lock = [e for e in logs if e.get("message_id") == messages.LOCK_TIMEOUT]
    assert len(lock) == 1 and lock[0]["error"].startswith("/run/lock/netavark.lock")
    assert any(e["event"] == "reconcile failed: this is a bug" for e in logs)
    assert messages.PODMAN_UNREACHABLE in ids(logs)
    assert ids(logs)[-2:] == [messages.PODMAN_RECONNECTED, messages.DAEMON_STOPPING]
    assert "last reconcile failed: /run/lock/netavark.lock is locked by pid 7" in h.notes.values(
        "STATUS"
    )


def test_triggers_after_the_loop_closed_are_dropped() -> None:
    async def scenario(h: Harness) -> None:
        await stop_after(h, 0.05)

    h, _, _ = run_service(scenario)
    h.push()  # the loop is gone: no exception
    assert h.reasons() == ["start"]
    structlog.reset_defaults()
