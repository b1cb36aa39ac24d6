"""The daemon's event loop: triggers in, one reconcile at a time, systemd told.

- A full reconcile at start, then READY=1 and STATUS= (one summary line).
- Triggers (podman events, ipam.db changes) are debounced (schedule.py); a
  reconcile never runs twice at once; triggers during one make exactly one more.
- A full resync every ``resync_seconds``, and a recheck when the cycle asks for
  one (a grace period ending); nothing else wakes the loop while idle.
- WATCHDOG=1 from the event loop at half of systemd's watchdog timeout; a
  reconcile hanging for ``CYCLE_STUCK_SECONDS`` stops the pings, so that systemd
  restarts the daemon.
- ``request_reload`` (SIGHUP): a bad new file is logged with CONFIG_REJECTED and
  the old configuration kept. ``request_stop`` (SIGTERM/SIGINT): STOPPING=1, the
  running reconcile finishes (a write is never cut short), then ``run`` returns.

The reconcile itself is the ``Cycle`` (cycle_api.py), run in a worker thread.
An optional ``CycleObserver`` (the status file and metrics: reporter.py) is told
about the start, every reconcile, podman's state changes and the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from ipamguard import __version__, messages
from ipamguard.config import Config, config_changes
from ipamguard.daemon.cycle_api import Cycle, CycleObserver, CycleOutcome, CycleResult
from ipamguard.daemon.schedule import Schedule
from ipamguard.daemon.triggers import Trigger, TriggerSource
from ipamguard.errors import (
    EXIT_OK,
    BoltError,
    ConfigError,
    IpamguardError,
    LockTimeout,
    PodmanUnavailable,
)

CYCLE_STUCK_SECONDS = 120.0
RETRY_AFTER_FAILURE = 30.0  # seconds before a failed reconcile is tried again

# the daemon needs podman's API (liveness and the event stream); most hosts never
# enabled it: say how, the first time
ENABLE_API_HINT = (
    " (its API socket does not exist: enable it with `systemctl enable --now podman.socket`,"
    " or `systemctl --user enable --now podman.socket` for a rootless podman)"
)

log = structlog.get_logger(__name__)


class NotifySink(Protocol):
    """Where sd_notify messages go (sdnotify.Notifier)."""

    def notify(self, **fields: str | int) -> bool: ...


SourceFactory = Callable[[Config], Sequence[TriggerSource]]


class Service:
    """See the module docstring; ``await run()`` returns the exit code."""

    def __init__(
        self,
        cycle: Cycle,
        config: Config,
        *,
        load_config: Callable[[], Config],
        make_sources: SourceFactory,
        notifier: NotifySink,
        watchdog_seconds: float | None = None,
        on_config: Callable[[Config], None] | None = None,
        observer: CycleObserver | None = None,
    ) -> None:
        """load_config: reads the file again (SIGHUP); on_config: applies a new one
        outside the service (logging); make_sources: the trigger sources for a config;
        observer: told about every reconcile (status file, metrics)."""
        self.config = config
        self._cycle = cycle
        self._load_config = load_config
        self._make_sources = make_sources
        self._notifier = notifier
        self._watchdog_seconds = watchdog_seconds
        self._on_config = on_config
        self._observer = observer
        self._sources: Sequence[TriggerSource] = ()
        self._stopping = False
        self._reload_requested = False
        # podman counts as reachable when its event stream and its API (as the
        # last reconcile found it) both are; the state changes are logged once
        self._podman_stream_ok = True
        self._podman_api_ok = True
        self._cycle_started: float | None = None
        self._last_failure: str | None = None
        self._summary = "starting"
        self._status_sent: str | None = None
        self.cycles = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._sleeping_until: float | None = None  # loop time the main loop sleeps until
        self._loop_thread: int | None = None
        self._schedule: Schedule | None = None

    # ----------------------------------------------------------------- control

    def request_stop(self, why: str = "") -> None:
        """Stop after the running reconcile (signal handler; event loop thread)."""
        if self._stopping:
            return
        self._stopping = True
        self._notifier.notify(STOPPING=1)
        busy = self._cycle_started is not None
        log.info(
            "stopping" + (" after the running reconcile" if busy else ""),
            message_id=messages.DAEMON_STOPPING,
            signal=why or None,
        )
        self._wakeup()

    def request_reload(self) -> None:
        """Read the configuration again before the next reconcile (SIGHUP)."""
        self._reload_requested = True
        self._wakeup()

    def push(self, trigger: Trigger) -> None:
        """Hand over a trigger; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._on_trigger(trigger)  # inotify, on the loop: no self-pipe round trip
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._on_trigger, trigger)

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """Until ``due`` (loop time) or a wake-up, whichever comes first: a timer on the
        wake event (cheaper than wait_for, which makes a task each time)."""
        assert self._wake is not None
        self._wake.clear()
        self._sleeping_until = due
        timer = loop.call_at(due, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()
            self._sleeping_until = None

    # ----------------------------------------------------------------- main loop

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        watch = self.config.watch
        schedule = self._schedule = Schedule(
            watch.debounce_seconds, watch.resync_seconds, loop.time()
        )
        self._start_sources()
        watchdog = loop.create_task(self._watchdog()) if self._watchdog_seconds else None
        self._observe("started")
        try:
            await self._run_cycle("start")
            if not self._stopping:
                self._notifier.notify(READY=1, STATUS=self._status())
                self._status_sent = self._status()
                log.info(
                    "ipamguard daemon started",
                    message_id=messages.DAEMON_STARTED,
                    version=__version__,
                    repair="on" if self.config.repair.enabled else "off",
                    db=self.config.paths.db,
                    podman=self.config.podman.url,
                    status=self._status(),
                )
            while not self._stopping:
                if self._reload_requested:
                    self._reload()
                    continue
                now = loop.time()
                reason = schedule.take(now)
                if reason is not None:
                    await self._run_cycle(reason, schedule.focus)
                    continue
                await self._sleep_until(loop, schedule.due_at())
        finally:
            self._stop_sources()
            self._observe("stopped")
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
        log.debug("stopped", cycles=self.cycles)
        return EXIT_OK

    def _on_trigger(self, trigger: Trigger) -> None:
        if self._stopping or self._schedule is None or self._loop is None:
            return
        log.debug("trigger", kind=trigger.kind, reason=trigger.reason)
        if trigger.kind == "podman-down":
            self._set_podman(trigger.reason, stream=False)
            return  # nothing to learn from a reconcile while podman is away
        if trigger.kind == "podman-up":
            self._set_podman(trigger.reason, stream=True)
        self._schedule.add(self._loop.time(), trigger)
        # Within a burst each trigger moves the due time later (the debounce): wake the
        # loop only when it sleeps past the new due time (the burst's first trigger). Each
        # event of a burst waking it cost ~0.1 ms of CPU for nothing.
        if self._sleeping_until is None or self._schedule.due_at() < self._sleeping_until:
            self._wakeup()

    # ----------------------------------------------------------------- reconcile

    async def _run_cycle(self, reason: str, focus: frozenset[str] | None = None) -> None:
        assert self._loop is not None and self._schedule is not None
        started = self._cycle_started = self._loop.time()
        started_at = time.time()
        recheck_after: float | None = RETRY_AFTER_FAILURE
        result: CycleResult | None = None
        failure: str | None = None
        try:
            result = await asyncio.to_thread(self._cycle.run, reason, self.config, focus)
        except IpamguardError as error:
            self._cycle_failed(reason, error)
            failure = str(error)
        except Exception:
            log.exception("reconcile failed: this is a bug", reason=reason)
            self._summary = "last reconcile failed (a bug, see the log)"
            failure = "a bug (see the log)"
        else:
            recheck_after = result.recheck_after
            self._cycle_done(reason, result, self._loop.time() - started)
        finally:
            self._cycle_started = None
            self.cycles += 1
        self._schedule.finished(self._loop.time(), recheck_after)
        self._send_status()
        outcome = CycleOutcome(
            reason, started_at, self._loop.time() - started, self.config, self.podman_ok,
            result, failure,
        )  # fmt: skip
        self._observe("cycle_finished", outcome)

    def _cycle_done(self, reason: str, result: CycleResult, seconds: float) -> None:
        if self._last_failure is not None:
            log.info("reconcile works again", reason=reason)
            self._last_failure = None
        self._set_podman("the reconcile could not ask podman's API", api=result.podman_ok)
        self._summary = result.summary
        log.debug("reconcile done", reason=reason, seconds=round(seconds, 3), status=result.summary)

    def _cycle_failed(self, reason: str, error: IpamguardError) -> None:
        text = str(error)
        self._summary = f"last reconcile failed: {text}"
        if isinstance(error, PodmanUnavailable):
            self._set_podman(text, api=False)
        elif text != self._last_failure:
            message_id = None
            if isinstance(error, LockTimeout):
                message_id = messages.LOCK_TIMEOUT
            elif isinstance(error, BoltError):
                message_id = messages.DB_UNREADABLE
            log.error(
                "reconcile failed", message_id=message_id, error=text, reason=reason,
                retry_in=RETRY_AFTER_FAILURE,
            )  # fmt: skip
        else:
            log.debug("reconcile failed again", error=text, reason=reason)
        self._last_failure = text

    @property
    def podman_ok(self) -> bool:
        return self._podman_stream_ok and self._podman_api_ok

    def _set_podman(
        self, detail: str, *, stream: bool | None = None, api: bool | None = None
    ) -> None:
        was_ok = self.podman_ok
        if stream is not None:
            self._podman_stream_ok = stream
        if api is not None:
            self._podman_api_ok = api
        if self.podman_ok == was_ok:
            return
        self._observe("podman_changed", self.podman_ok)
        if self.podman_ok:
            log.info(
                "podman is reachable again; resyncing",
                message_id=messages.PODMAN_RECONNECTED, podman=self.config.podman.url,
            )  # fmt: skip
        else:
            log.warning(
                "podman is unreachable; nothing is released until it answers"
                + (ENABLE_API_HINT if _socket_missing(self.config.podman.url) else ""),
                message_id=messages.PODMAN_UNREACHABLE, podman=self.config.podman.url,
                error=detail,
            )  # fmt: skip
        self._send_status()

    def _status(self) -> str:
        if not self.podman_ok and "podman unreachable" not in self._summary:
            return f"{self._summary}, podman unreachable"
        return self._summary

    def _send_status(self) -> None:
        status = self._status()
        if self._status_sent is not None and status != self._status_sent:
            self._notifier.notify(STATUS=status)
            self._status_sent = status

    def _observe(self, event: str, *args: object) -> None:
        """Tell the observer; its failure is a bug to log, never the daemon's end."""
        if self._observer is None:
            return
        try:
            getattr(self._observer, event)(*args)
        except Exception:
            log.exception("reporting failed: this is a bug", hook=event)

    # ----------------------------------------------------------------- reload

    def _reload(self) -> None:
        assert self._schedule is not None
        self._reload_requested = False
        self._notifier.notify(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
        try:
            new = self._load_config()
        except ConfigError as error:
            log.error(
                "new configuration rejected; the old one stays in use",
                message_id=messages.CONFIG_REJECTED, error=str(error),
            )  # fmt: skip
        else:
            old, self.config = self.config, new
            if self._on_config is not None:
                self._on_config(new)
            if (old.podman, old.paths.db) != (new.podman, new.paths.db):
                self._stop_sources()
                self._start_sources()
            self._schedule.configure(new.watch.debounce_seconds, new.watch.resync_seconds)
            self._schedule.request("configuration reloaded")
            changes = config_changes(old, new)
            log.info(
                "configuration reloaded",
                message_id=messages.CONFIG_RELOADED, changes="; ".join(changes) or "none",
            )  # fmt: skip
        self._notifier.notify(READY=1, STATUS=self._status())
        self._status_sent = self._status()

    # ----------------------------------------------------------------- sources, watchdog

    def _start_sources(self) -> None:
        assert self._loop is not None
        self._sources = self._make_sources(self.config)
        for source in self._sources:
            source.start(self._loop, self.push)

    def _stop_sources(self) -> None:
        for source in self._sources:
            try:
                source.stop()
            except Exception:
                log.exception("a trigger source did not stop cleanly", source=repr(source))
        self._sources = ()

    async def _watchdog(self) -> None:
        assert self._loop is not None and self._watchdog_seconds
        interval = self._watchdog_seconds / 2
        warned = False
        while True:
            started = self._cycle_started
            if started is None or self._loop.time() - started < CYCLE_STUCK_SECONDS:
                self._notifier.notify(WATCHDOG=1)
                warned = False
            elif not warned:
                log.error(
                    "a reconcile hangs; watchdog pings stop (systemd restarts the daemon)",
                    seconds=round(self._loop.time() - started),
                )
                warned = True
            await asyncio.sleep(interval)


def _socket_missing(url: str | None) -> bool:
    """Is podman's API a unix socket that does not exist (never enabled)?"""
    if url is None or not url.startswith("unix://"):
        return False
    return not os.path.exists(url[len("unix://") :])
