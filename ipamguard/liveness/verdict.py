"""One verdict per container ID, from every source: may its addresses be released?

The only place that decides. Every other part (the reconciler, repair, release,
restore, the daemon) asks ``container_verdict``. Only a teardown that happened
makes an address free:

- **live**: some source sees it in any state other than podman's ``exited``: running,
  paused, created, initialized, stopping, removing, or ``stopped`` (podman's word
  for "exited, cleanup not done yet": its network namespace and addresses are
  still set up, and ``podman start`` reuses them without allocating); a runtime
  state entry (the runtime's container exists until podman's cleanup deletes it);
  a conmon; an exited container whose network podman still records as set up
  (SandboxKey); an address that answers on its network (``probe_evidence``).
- **torn-down**: podman's API says ``exited`` *and* that its network was torn down
  (no SandboxKey), no other source sees it, and every source answered: a teardown
  ran and failed to free the addresses (podman logs "Unable to clean up network").
- **absent**: no source knows the ID, and every source answered.
- **unknown**: anything else (a source could not answer; podman could not say
  whether the network was torn down). Never released.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipamguard.liveness.model import (
    EXITED,
    NETWORK_SET_UP,
    NETWORK_TORN_DOWN,
    LivenessSnapshot,
    describe,
)

LIVE, TORN_DOWN, ABSENT, UNKNOWN = "live", "torn-down", "absent", "unknown"
ABSENT_EVIDENCE = "no liveness source knows this container"
API_SOURCE = "podman-api"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # LIVE, TORN_DOWN, ABSENT or UNKNOWN
    evidence: tuple[str, ...]

    @property
    def releasable(self) -> bool:
        """May its addresses be released (once confirmed, fenced and probed)?"""
        return self.kind in (TORN_DOWN, ABSENT)


def container_verdict(container_id: str, liveness: LivenessSnapshot) -> Verdict:
    """What every source says of ``container_id``, as one verdict with its evidence."""
    seen = liveness.seen(container_id)
    evidence = tuple(describe(o) for o in seen)
    blind = tuple("unknown: " + failure for failure in liveness.failures)
    if not seen:
        if liveness.complete:
            return Verdict(ABSENT, (ABSENT_EVIDENCE,))
        return Verdict(UNKNOWN, blind)
    if any(o.state != EXITED or o.source != API_SOURCE for o in seen):
        return Verdict(LIVE, evidence)
    if any(o.network == NETWORK_SET_UP for o in seen):
        return Verdict(LIVE, evidence)
    if not all(o.network == NETWORK_TORN_DOWN for o in seen):
        why = "podman could not say whether its network was torn down"
        return Verdict(UNKNOWN, (*evidence, why))
    if not liveness.complete:
        return Verdict(UNKNOWN, evidence + blind)
    return Verdict(TORN_DOWN, evidence)
