"""Why the daemon looks again: triggers, and the sources that push them.

Sources (podman's event stream, inotify on ipam.db) call ``push(trigger)`` from any
thread; the service merges bursts (schedule.py) into one reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

TriggerKind = Literal["podman-event", "db-changed", "podman-down", "podman-up"]


@dataclass(frozen=True)
class Trigger:
    """One reason to reconcile: a podman event, a change of ipam.db, podman's state."""

    kind: TriggerKind
    container_id: str | None = None
    reason: str = ""

    def describe(self) -> str:
        return f"{self.kind}: {self.reason}" if self.reason else self.kind


Push = Callable[[Trigger], None]
"""Hands a trigger to the service; safe to call from any thread."""


class TriggerSource(Protocol):
    """Something that pushes triggers until stopped."""

    def start(self, loop: asyncio.AbstractEventLoop, push: Push) -> None:
        """Begin watching; called in the event loop's thread."""
        ...

    def stop(self) -> None:
        """Stop promptly (well under a second) and release everything."""
        ...
