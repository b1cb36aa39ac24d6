"""What the liveness sources saw: one observation per container and source, merged.

Container IDs are compared exactly, as ipam.db stores them (64 hex for podman,
``buildah-buildahNNN`` for a ``buildah run`` / ``podman build`` RUN step): never by
name or prefix.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

RUNNING = "running"
STOPPED = "stopped"  # runtime state / conmon: the process is gone
UNKNOWN = "unknown"  # a runtime state entry whose pid could not be read

# States whose container still holds its process and its addresses. Podman says
# "paused" and "stopping" for such containers; runtime sources say "running".
RUNNING_STATES = frozenset({RUNNING, "paused", "stopping"})


@dataclass(frozen=True)
class ContainerInfo:
    """One source's view of one container.

    ``state`` as the source says it: podman's own words ("running", "exited",
    "created", "initialized", "paused", "stopping", "storage" for buildah's
    containers, ...); runtime state and conmon say "running" when the process
    exists, else "stopped".
    """

    id: str
    state: str
    source: str
    name: str = ""

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


class LivenessSource(Protocol):
    """Something that can list containers: podman's API, runtime state, processes."""

    name: str

    def observe(self) -> list[ContainerInfo]:
        """Every container this source knows; raises SourceUnavailable (one line)."""
        ...


@dataclass(frozen=True)
class LivenessSnapshot:
    """Every source's answer at ``taken_at`` (time.time()), merged by container ID.

    An ID known to any source is known; a container is running if any source sees
    it running. ``failures`` holds one line per source that could not answer: an
    incomplete snapshot proves nothing about absent IDs.
    """

    taken_at: float
    containers: dict[str, ContainerInfo]
    failures: tuple[str, ...] = ()
    observations: tuple[ContainerInfo, ...] = field(default=(), repr=False)

    @property
    def complete(self) -> bool:
        """True if every source answered."""
        return not self.failures

    def exists(self, container_id: str) -> bool:
        return container_id in self.containers

    def running(self, container_id: str) -> bool:
        info = self.containers.get(container_id)
        return info is not None and info.running

    def evidence(self, container_id: str) -> list[str]:
        """What each source said, e.g. ``["podman-api: exited", "runc: running"]``."""
        return self._evidence.get(container_id, [])

    @functools.cached_property
    def _evidence(self) -> dict[str, list[str]]:
        """Evidence lines by ID, built once (asked for every allocation: keep it O(n))."""
        index: dict[str, list[str]] = {}
        for o in self.observations:
            index.setdefault(o.id, []).append(f"{o.source}: {o.state}")
        return index


def merge(observations: Iterable[ContainerInfo]) -> dict[str, ContainerInfo]:
    """One ContainerInfo per ID: the first running observation, else the first one.

    The merged entry carries the first non-empty name any source gave.
    """
    merged: dict[str, ContainerInfo] = {}
    for obs in observations:
        old = merged.get(obs.id)
        if old is None:
            merged[obs.id] = obs
            continue
        best = obs if obs.running and not old.running else old
        name = old.name or obs.name
        if best is not old or name != old.name:
            merged[obs.id] = ContainerInfo(best.id, best.state, best.source, name)
    return merged
