"""The service tells its observer (status file, metrics) about every reconcile.

The reconcile is the recording stand-in; the observer records what it is told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from structlog.testing import capture_logs

from ipamguard.daemon.cycle_api import CycleOutcome
from ipamguard.daemon.service import Service
from ipamguard.errors import LockTimeout, PodmanUnavailable

from .recording_cycle import RecordingCycle
from .test_service import DB, FAST, FakeSource, Notes


@dataclass
class Observer:
    events: list[tuple[str, Any]] = field(default_factory=list)
    fail: bool = False

    def started(self) -> None:
        self.events.append(("started", None))

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        self.events.append(("cycle", outcome))
        if self.fail:
            raise RuntimeError("a bug in the reporter")

    def podman_changed(self, reachable: bool) -> None:
        self.events.append(("podman", reachable))

    def stopped(self) -> None:
        self.events.append(("stopped", None))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def outcomes(self) -> list[CycleOutcome]:
        return [value for name, value in self.events if name == "cycle"]


Scenario = Callable[[Service, FakeSource], Coroutine[Any, Any, None]]


def serve(cycle: RecordingCycle, observer: Observer, scenario: Scenario) -> tuple[int, Any]:
    source = FakeSource()
    service = Service(
        cycle, FAST, load_config=lambda: FAST, make_sources=lambda c: [source],
        notifier=Notes(), observer=observer,
    )  # fmt: skip

    async def main() -> int:
        task = asyncio.create_task(service.run())
        while not cycle.runs and not task.done():
            await asyncio.sleep(0.005)
        await scenario(service, source)
        return await asyncio.wait_for(task, 10)

    with capture_logs() as logs:
        code = asyncio.run(main())
    return code, logs


async def one_more_then_stop(service: Service, source: FakeSource) -> None:
    await asyncio.sleep(0.05)
    assert source.push is not None
    source.push(DB)
    await asyncio.sleep(0.3)
    service.request_stop("SIGTERM")


def test_every_reconcile_is_reported_between_start_and_stop() -> None:
    observer = Observer()
    before = time.time()
    code, _ = serve(RecordingCycle(seconds=0.05), observer, one_more_then_stop)
    assert code == 0
    assert observer.names() == ["started", "cycle", "cycle", "stopped"]
    first, second = observer.outcomes()
    assert first.reason == "start" and second.reason.startswith("db-changed")
    assert first.result is not None and first.error is None and first.podman_ok
    assert first.result.summary == "2 networks, 5 allocations, 1 open finding, repair off"
    assert first.seconds >= 0.05 and before <= first.started_at <= second.started_at
    assert first.config is FAST


def test_a_failed_reconcile_and_podman_going_away_are_reported() -> None:
    observer = Observer()
    cycle = RecordingCycle(fail=LockTimeout("ipam.db: lock held for 2 s"))

    async def scenario(service: Service, source: FakeSource) -> None:
        await asyncio.sleep(0.05)
        cycle.fail = PodmanUnavailable("podman: connection refused")
        assert source.push is not None
        source.push(DB)
        await asyncio.sleep(0.3)
        service.request_stop("SIGTERM")

    serve(cycle, observer, scenario)
    first, second = observer.outcomes()
    assert first.result is None and first.error == "ipam.db: lock held for 2 s"
    assert second.result is None and not second.podman_ok
    assert ("podman", False) in observer.events
    assert observer.names().index("podman") < observer.names().index("stopped")


def test_a_failing_observer_never_stops_the_daemon() -> None:
    observer = Observer(fail=True)
    code, logs = serve(RecordingCycle(), observer, one_more_then_stop)
    assert code == 0 and len(observer.outcomes()) == 2
    assert [e["event"] for e in logs].count("reporting failed: this is a bug") == 2
