"""podman's event stream as triggers: a thread reading ``GET /libpod/events``.

The raw API over http.client, not podman-py: the thread blocks in ``recv`` on a
socket this module owns, so ``stop()`` wakes it at once with ``shutdown()`` from
the stopping thread (podman-py's stream hides its socket). No timeouts while
idle: no wake-ups.

Pushed triggers:
- ``podman-event`` for container died / cleanup / remove / start and network
  disconnect / remove (filtered by podman, checked again here);
- ``podman-down`` once when podman cannot be reached (the stream broke off and
  reconnecting failed); reconnecting then backs off exponentially, up to 30 s;
- ``podman-up`` after reconnecting (events were lost: the service resyncs).
A stream that keeps breaking right after it connected is retried with the same
backoff, never in a busy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import structlog

from ipamguard.daemon.triggers import Push, Trigger
from ipamguard.podman_http import API_PREFIX, connection

CONTAINER_ACTIONS = frozenset({"died", "cleanup", "remove", "start"})
# podman sends "network disconnect" (Actor: the container); for `podman network rm`
# nothing before podman 5.4, "network remove" (Actor: the network) since 5.4
NETWORK_ACTIONS = frozenset({"disconnect", "remove"})
EVENT_FILTERS = {
    "type": ["container", "network"],
    "event": sorted(CONTAINER_ACTIONS | NETWORK_ACTIONS),
}
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0

log = structlog.get_logger(__name__)


class _StreamError(Exception):
    """podman answered, but not with an event stream."""


def trigger_from_event(event: Mapping[str, Any]) -> Trigger | None:
    """The trigger for one decoded event of the stream, or None for other events."""
    kind = event.get("Type") or event.get("type")
    action = event.get("Action") or event.get("status")
    actor = _table(event.get("Actor"))
    name = _table(actor.get("Attributes")).get("name", "")
    if kind == "container" and action in CONTAINER_ACTIONS:
        container_id = actor.get("ID") or event.get("id")
        cid = container_id if isinstance(container_id, str) else None
        reason = f"container {action} {name or (cid or '')[:12]}".rstrip()
        return Trigger("podman-event", cid, reason)
    if kind == "network" and action == "disconnect":
        container_id = actor.get("ID")
        cid = container_id if isinstance(container_id, str) and container_id else None
        return Trigger("podman-event", cid, f"network disconnect {name}".rstrip())
    if kind == "network" and action in NETWORK_ACTIONS:
        return Trigger("podman-event", None, f"network {action} {name}".rstrip())
    return None


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


class PodmanEvents:
    """A ``TriggerSource`` following podman's event stream in a thread."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        *,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._push: Push | None = None

    def start(self, loop: asyncio.AbstractEventLoop, push: Push) -> None:
        self._push = push
        self._thread = threading.Thread(target=self._run, name="podman-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._conn is not None and self._conn.sock is not None:
                with contextlib.suppress(OSError):
                    self._conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        delay = 0.0
        first = True
        down_reported = False
        while not self._stopping.is_set():
            if delay and self._stopping.wait(delay):
                break
            started = time.monotonic()
            try:
                response = self._open_stream()
            except (OSError, http.client.HTTPException, _StreamError) as error:
                self._close()
                if self._stopping.is_set():
                    break
                log.debug("podman event stream unavailable", url=self.url, error=str(error))
                if not down_reported:
                    self._emit(Trigger("podman-down", None, f"{self.url}: {_describe(error)}"))
                    down_reported = True
                delay = self._next_delay(delay)
                continue
            if down_reported or not first:
                self._emit(Trigger("podman-up", None, "event stream reconnected"))
            first = False
            down_reported = False
            self._read_stream(response)
            self._close()
            lived = time.monotonic() - started
            delay = 0.0 if lived >= self.backoff_max else self._next_delay(delay)

    def _next_delay(self, delay: float) -> float:
        return min(max(delay * 2, self.backoff_initial), self.backoff_max)

    def _open_stream(self) -> http.client.HTTPResponse:
        """_ping (podman answers), then the event stream; blocks without timeout after."""
        conn = connection(self.url, self.timeout)
        with self._lock:
            self._conn = conn
        if self._stopping.is_set():
            raise _StreamError("stopping")
        conn.request("GET", f"{API_PREFIX}/_ping")
        ping = conn.getresponse()
        body = ping.read()
        if ping.status != 200:
            raise _StreamError(f"_ping: HTTP {ping.status} {body[:200]!r}")
        filters = urllib.parse.quote(json.dumps(EVENT_FILTERS, separators=(",", ":")))
        conn.request("GET", f"{API_PREFIX}/events?stream=true&filters={filters}")
        assert conn.sock is not None
        conn.sock.settimeout(None)  # podman may hold the headers until the first event
        response = conn.getresponse()
        if response.status != 200:
            raise _StreamError(f"events: HTTP {response.status} {response.read(200)!r}")
        return response

    def _read_stream(self, response: http.client.HTTPResponse) -> None:
        while not self._stopping.is_set():
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException, ValueError):
                return
            if not line:
                return  # podman closed the stream (or stop() shut the socket down)
            try:
                event = json.loads(line)
            except ValueError:
                log.debug("podman event not JSON", line=line[:200])
                continue
            trigger = trigger_from_event(event) if isinstance(event, dict) else None
            if trigger is not None:
                self._emit(trigger)

    def _emit(self, trigger: Trigger) -> None:
        if self._push is not None and not self._stopping.is_set():
            self._push(trigger)

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
