"""What the liveness sources saw: one observation per container and source, merged.

Container IDs are compared exactly, as ipam.db stores them (64 hex for podman,
``buildah-buildahNNN`` for a ``buildah run`` / ``podman build`` RUN step): never by
name or prefix.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

RUNNING = "running"
STOPPED = "stopped"  # runtime state: the process is gone, the runtime's container is not
UNKNOWN = "unknown"  # a runtime state entry whose pid could not be read
EXITED = "exited"  # podman: stopped *and* cleaned up (podman says "stopped" before cleanup)

# States whose container still holds its process and its addresses. Podman says
# "paused" and "stopping" for such containers; runtime sources say "running".
RUNNING_STATES = frozenset({RUNNING, "paused", "stopping"})

# What a source knows of a container's network (``ContainerInfo.network``).
NETWORK_SET_UP = "set-up"  # a network namespace is set up (podman's SandboxKey)
NETWORK_TORN_DOWN = "torn-down"  # podman tore it down (no SandboxKey)


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
    network: str | None = None  # NETWORK_SET_UP, NETWORK_TORN_DOWN, or None: not known
    sandbox: str = ""  # the network namespace podman recorded (SandboxKey), if any
    # the networks podman says the container is connected to (None: not known)
    networks: tuple[str, ...] | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


class Interest(frozenset[str]):
    """The container IDs that hold addresses (what the sources are asked about), and
    ``only``: when not None, the caller needs to hear of those containers alone (a
    focused reconcile); a source may then spare itself the others (podman's API lists
    just those), or answer for every container anyway."""

    only: frozenset[str] | None = None

    @classmethod
    def of(cls, holders: Iterable[str], only: Iterable[str] | None = None) -> Interest:
        interest = cls(holders)
        interest.only = None if only is None else frozenset(only)
        return interest


class LivenessSource(Protocol):
    """Something that can list containers: podman's API, runtime state, processes."""

    name: str

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        """Every container this source knows; raises SourceUnavailable (one line).

        ``holders``: the IDs that hold addresses; a source may look closer at those
        (podman's API asks whether an exited holder's network was torn down).
        """
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
    # doubts that only the network can lift: no address may be released on a network
    # where probing is impossible while one stands (see ipamguard.fenced)
    doubts: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True if every source answered."""
        return not self.failures

    def exists(self, container_id: str) -> bool:
        return container_id in self.containers

    def running(self, container_id: str) -> bool:
        info = self.containers.get(container_id)
        return info is not None and info.running

    def combined(self, later: LivenessSnapshot) -> LivenessSnapshot:
        """This snapshot and a later one as one (every observation, every failure)."""
        observations = (*self.observations, *later.observations)
        return LivenessSnapshot(
            self.taken_at, merge(observations), self.failures + later.failures, observations,
            self.doubts + later.doubts,
        )  # fmt: skip

    def seen(self, container_id: str) -> list[ContainerInfo]:
        """Every source's observation of this container (none: no source knows it)."""
        return self._by_id.get(container_id, [])

    def evidence(self, container_id: str) -> list[str]:
        """What each source said, e.g. ``["podman-api: exited", "runc: running"]``."""
        return [describe(o) for o in self.seen(container_id)]

    @functools.cached_property
    def _by_id(self) -> dict[str, list[ContainerInfo]]:
        """Observations by ID, built once (asked for every allocation: keep it O(n))."""
        index: dict[str, list[ContainerInfo]] = {}
        for o in self.observations:
            index.setdefault(o.id, []).append(o)
        return index


def connected(container_id: str, network: str, liveness: LivenessSnapshot) -> bool | None:
    """Is the container connected to ``network``, as podman says? None: podman did not say."""
    said = [o.networks for o in liveness.seen(container_id) if o.networks is not None]
    if not said:
        return None
    return any(network in networks for networks in said)


def describe(observation: ContainerInfo) -> str:
    """``podman-api: exited, network torn down`` (one evidence line)."""
    text = f"{observation.source}: {observation.state}"
    if observation.network == NETWORK_SET_UP:
        where = f" ({observation.sandbox})" if observation.sandbox else ""
        text += f", network still set up{where}"
    elif observation.network == NETWORK_TORN_DOWN:
        text += ", network torn down"
    return text


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
            merged[obs.id] = dataclasses.replace(best, name=name)
    return merged
