"""The reconciler: allocations + liveness observations + time -> findings.

A pure function, no I/O. The order that makes it safe is the caller's job:
ipam.db is read first, liveness is asked afterwards, so an allocation made
after the read cannot be judged; every release is re-checked under the locks.

Per container ID held in ipam.db:
- known to some source and not stopped (running, paused, created, ...): live.
  Its allocations are never released; inconsistencies are ``dangling`` (report only).
- known, and every source says stopped/exited: ``stale`` (podman releases at
  cleanup; an exited container still holding addresses is a failed teardown).
- unknown to every source: ``leaked`` -- but only releasable when every source
  answered (a blind spot is "unknown": report, never release).
A finding becomes ``confirmed`` when two observations at least ``grace`` seconds
apart agree (``first_seen`` is kept by the caller between observations).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ipamguard.ipam.model import Allocation, IdsEntry, IpamState
from ipamguard.kinds import DANGLING, LEAKED, MALFORMED, ORPHAN_NETWORK, STALE, STOPPED_STATES


class Liveness(Protocol):
    """What the reconciler needs from a liveness snapshot."""

    @property
    def complete(self) -> bool: ...

    @property
    def failures(self) -> tuple[str, ...]: ...

    def state(self, container_id: str) -> str | None:
        """Merged state ("running" wins), or None when no source knows the ID."""
        ...

    def evidence(self, container_id: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    network: str
    subnet: str | None
    ip: str | None
    container_id: str | None
    first_seen: float
    evidence: tuple[str, ...]
    releasable: bool  # may be released once confirmed
    confirmed: bool = False

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str | None]:
        return (self.kind, self.network, self.subnet, self.ip, self.container_id)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (``dataclasses.asdict`` deep-copies: 10x slower here)."""
        return {
            "kind": self.kind,
            "network": self.network,
            "subnet": self.subnet,
            "ip": self.ip,
            "container_id": self.container_id,
            "first_seen": self.first_seen,
            "evidence": list(self.evidence),
            "releasable": self.releasable,
            "confirmed": self.confirmed,
        }

    def describe(self) -> str:
        """'leaked: net 10.88.0.0/16 10.88.0.5 held by container 36e1…' (one line)."""
        where = " ".join(x for x in (self.network, self.subnet, self.ip) if x)
        who = f" held by container {self.container_id}" if self.container_id else ""
        return f"{self.kind}: {where}{who}"


@dataclass
class Reconciliation:
    findings: list[Finding] = field(default_factory=list)
    networks: int = 0
    allocations: int = 0
    liveness_complete: bool = True
    liveness_failures: tuple[str, ...] = ()


FindingKey = tuple[str, str, str | None, str | None, str | None]
ABSENT = "no liveness source knows this container"


def reconcile(
    state: IpamState,
    liveness: Liveness,
    network_names: Iterable[str] | None,
    now: float,
    first_seen: Mapping[FindingKey, float],
    grace: float,
) -> Reconciliation:
    """Findings for ``state`` (read first) judged by ``liveness`` (asked after)."""
    known_networks = None if network_names is None else set(network_names)
    result = Reconciliation(
        networks=len(state.networks),
        allocations=len(state.allocations()),
        liveness_complete=liveness.complete,
        liveness_failures=liveness.failures,
    )
    raw: list[Finding] = []
    for network in state.networks:
        if known_networks is not None and network.name not in known_networks:
            raw.append(_orphan_network(network.name, state, liveness, now))
            continue
        allocations = [a for s in network.subnets for a in s.allocations]
        raw.extend(_container_findings(allocations, network.ids, liveness, now))
    raw.extend(
        Finding(MALFORMED, m.network, m.subnet, None, None, now, (f"{m.key}: {m.reason}",), False)
        for m in state.malformed
    )
    for finding in raw:
        seen = first_seen.get(finding.key, now)
        confirmed = finding.releasable and now - seen >= grace
        result.findings.append(_with(finding, first_seen=seen, confirmed=confirmed))
    return result


def _with(finding: Finding, *, first_seen: float, confirmed: bool) -> Finding:
    return Finding(
        finding.kind, finding.network, finding.subnet, finding.ip, finding.container_id,
        first_seen, finding.evidence, finding.releasable, confirmed,
    )  # fmt: skip


def _verdict(container_id: str, liveness: Liveness) -> tuple[str, list[str]]:
    """("live" | "stopped" | "absent" | "unknown", evidence lines)."""
    state = liveness.state(container_id)
    if state is None:
        if liveness.complete:
            return "absent", [ABSENT]
        return "unknown", ["unknown: " + "; ".join(liveness.failures)]
    if state not in STOPPED_STATES:
        return "live", []  # never a finding by itself: evidence only if inconsistent
    return "stopped", liveness.evidence(container_id)


def _container_findings(
    allocations: list[Allocation], ids: list[IdsEntry], liveness: Liveness, now: float
) -> list[Finding]:
    entries = {e.container_id: e for e in ids}
    findings: list[Finding] = []
    seen_ids: set[str] = set()
    for a in allocations:
        seen_ids.add(a.container_id)
        verdict, evidence = _verdict(a.container_id, liveness)
        entry = entries.get(a.container_id)
        consistent = entry is not None and a.ip in entry.ips
        if not consistent:
            evidence = [*evidence, f"no ids entry lists {a.ip} for this container"]
        if verdict == "live":
            if not consistent:
                evidence = [*liveness.evidence(a.container_id), *evidence]
                findings.append(_finding(DANGLING, a, evidence, now, releasable=False))
            continue
        kind = STALE if verdict == "stopped" else LEAKED
        findings.append(_finding(kind, a, evidence, now, releasable=verdict != "unknown"))
    held = {(a.container_id, a.ip) for a in allocations}
    for entry in ids:
        missing = [ip for ip in entry.ips if (entry.container_id, ip) not in held]
        if not missing and entry.container_id in seen_ids:
            continue  # consistent, judged with its allocations
        verdict, evidence = _verdict(entry.container_id, liveness)
        note = f"ids entry lists {', '.join(missing) or 'no IP'} not held by this container"
        evidence = [*evidence, note]
        if verdict == "live":
            kind, releasable = DANGLING, False
            evidence = [*liveness.evidence(entry.container_id), *evidence]
        else:
            kind, releasable = (STALE if verdict == "stopped" else LEAKED), verdict != "unknown"
        if entry.container_id in seen_ids and kind != DANGLING:
            continue  # its allocations carry the finding; the release takes the entry too
        findings.append(
            Finding(kind, entry.network, None, None, entry.container_id, now,
                    tuple(evidence), releasable)
        )  # fmt: skip
    return findings


def _finding(
    kind: str, allocation: Allocation, evidence: list[str], now: float, releasable: bool
) -> Finding:
    return Finding(
        kind, allocation.network, allocation.subnet, allocation.ip, allocation.container_id,
        now, tuple(evidence), releasable,
    )  # fmt: skip


def _orphan_network(name: str, state: IpamState, liveness: Liveness, now: float) -> Finding:
    network = state.network(name)
    assert network is not None
    holders = {a.container_id for s in network.subnets for a in s.allocations}
    holders.update(e.container_id for e in network.ids)
    live = sorted(cid for cid in holders if _verdict(cid, liveness)[0] in ("live", "unknown"))
    evidence = [f"no network config named {name!r}", f"{len(holders)} container(s) hold addresses"]
    if live:
        evidence.append("held by live or unknown container(s): " + ", ".join(c[:12] for c in live))
    return Finding(ORPHAN_NETWORK, name, None, None, None, now, tuple(evidence), not live)
