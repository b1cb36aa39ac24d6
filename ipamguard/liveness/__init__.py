"""Which containers exist, and which run? Asked of every source, merged.

The reconciler releases an allocation only if the snapshot is complete and no
source knows the container ID. ipam.db is shared by every rootful libpod instance
(any ``--root``), so podman's API alone is not enough: runtime state and conmon
processes see the containers of the other storage roots, and ``buildah run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable

from ipamguard.errors import SourceUnavailable, SourceUncertain
from ipamguard.liveness.inflight import InFlightSource
from ipamguard.liveness.model import (
    RUNNING_STATES,
    ContainerInfo,
    Interest,
    LivenessSnapshot,
    LivenessSource,
    merge,
)
from ipamguard.liveness.podman_api import DEFAULT_URL, PodmanApiSource
from ipamguard.liveness.runtime import RUNTIME_STATE_DIRS, ConmonSource, RuntimeStateSource

__all__ = [
    "DEFAULT_URL",
    "RUNNING_STATES",
    "RUNTIME_STATE_DIRS",
    "ConmonSource",
    "ContainerInfo",
    "InFlightSource",
    "Interest",
    "LivenessSnapshot",
    "LivenessSource",
    "PodmanApiSource",
    "RuntimeStateSource",
    "collect",
]


def collect(
    sources: Iterable[LivenessSource],
    holders: Collection[str] = (),
    clock: Callable[[], float] = time.time,
) -> LivenessSnapshot:
    """Ask every source once; a source that cannot answer becomes a failure line.

    ``holders``: the container IDs that hold addresses (see LivenessSource.observe; an
    ``Interest`` may also say that only some containers are of interest).
    taken_at is the time before the first source was asked.
    """
    taken_at = clock()
    observations: list[ContainerInfo] = []
    failures: list[str] = []
    doubts: list[str] = []
    for source in sources:
        try:
            observations += source.observe(holders)
        except SourceUnavailable as e:
            failures.append(str(e) or f"{source.name}: could not answer")
        except SourceUncertain as e:
            doubts.append(str(e))
    return LivenessSnapshot(
        taken_at, merge(observations), tuple(failures), tuple(observations), tuple(doubts)
    )
