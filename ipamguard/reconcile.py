"""The reconciler: allocations + liveness observations + time -> findings.

A pure function, no I/O. The order that makes it safe is the caller's job:
ipam.db is read first, liveness is asked afterwards, so an allocation made
after the read cannot be judged; every release is re-checked under the locks.

Per container ID held in the store, the one verdict (ipamguard.liveness.verdict):
- live: its allocations are never released; inconsistencies are ``dangling``
  (report only).
- torn-down (podman says exited and its network was torn down): ``stale``, a
  teardown that failed to free the addresses.
- absent (no source knows the ID): ``leaked``.
- unknown: ``leaked`` or ``stale`` as far as can be told, never releasable (a blind
  spot is not a dead container).
A finding becomes ``confirmed`` when two observations at least ``grace`` seconds
apart agree (``first_seen`` is kept by the caller between observations).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ipamguard.ipam.model import Allocation, IdsEntry, IpamState, Network
from ipamguard.kinds import DANGLING, LEAKED, MALFORMED, ORPHAN_NETWORK, STALE
from ipamguard.liveness.model import LivenessSnapshot, connected
from ipamguard.liveness.verdict import LIVE, TORN_DOWN, UNKNOWN, container_verdict

FindingKey = tuple[str, str, str, str | None, str | None, str | None]


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
    store: str = "netavark"  # the allocation store it was found in (ipamguard.stores)

    @property
    def key(self) -> FindingKey:
        return (self.store, self.kind, self.network, self.subnet, self.ip, self.container_id)

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
            "store": self.store,
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


def reconcile(
    state: IpamState,
    liveness: LivenessSnapshot,
    network_names: Iterable[str] | None,
    now: float,
    first_seen: Mapping[FindingKey, float],
    grace: float,
    store: str = "netavark",
    only: Collection[str] | None = None,
    previous: Reconciliation | None = None,
) -> Reconciliation:
    """Findings for ``state`` (read first from ``store``) judged by ``liveness``
    (asked after).

    ``only`` (a focused reconcile, with ``previous`` the last one of this store): the
    containers to judge, the only ones ``liveness`` was asked about; every other
    container keeps what ``previous`` found for it, and orphan networks (which involve
    every holder) are carried over from it rather than judged.
    """
    known_networks = None if network_names is None else set(network_names)
    result = Reconciliation(
        networks=len(state.networks),
        allocations=sum(len(s.allocations) for n in state.networks for s in n.subnets),
        liveness_complete=liveness.complete,
        liveness_failures=liveness.failures,
    )
    carried: list[Finding] = []
    if previous is None:
        only = None
    elif only is not None:
        carried = [f for f in previous.findings if f.container_id not in only]
    raw: list[Finding] = []
    held = None if only is None else state.held_by(only)
    for network in state.networks:
        name = network.name
        orphaned = network.orphaned
        if orphaned is None:
            orphaned = known_networks is not None and network.name not in known_networks
        if orphaned:
            if only is None:
                raw.append(_orphan_network(network.name, state, liveness, now))
            else:
                raw += (f for f in carried if f.kind == ORPHAN_NETWORK and f.network == name)
            continue
        allocations, ids = _holdings(network, only, held)
        if only is not None:
            raw += (f for f in carried if f.network == network.name and f.kind != ORPHAN_NETWORK
                    and f.kind != MALFORMED)  # fmt: skip
        raw.extend(_container_findings(allocations, ids, liveness, now, network.indexed))
    raw.extend(
        Finding(MALFORMED, m.network, m.subnet, None, None, now, (f"{m.key}: {m.reason}",), False)
        for m in state.malformed
    )
    for finding in raw:
        seen = first_seen.get(_with(finding, first_seen=now, confirmed=False, store=store).key, now)
        confirmed = finding.releasable and now - seen >= grace
        result.findings.append(_with(finding, first_seen=seen, confirmed=confirmed, store=store))
    return result


def _holdings(
    network: Network,
    only: Collection[str] | None,
    held: list[Allocation | IdsEntry] | None,
) -> tuple[list[Allocation], list[IdsEntry]]:
    """The network's allocations and ids entries (of the containers ``only``; ``held``:
    theirs in every network, from the store's index, if it has one)."""
    if only is None:
        return [a for s in network.subnets for a in s.allocations], network.ids
    name = network.name
    if held is not None:
        return (
            [e for e in held if isinstance(e, Allocation) and e.network == name],
            [e for e in held if isinstance(e, IdsEntry) and e.network == name],
        )
    return (
        [a for s in network.subnets for a in s.allocations if a.container_id in only],
        [e for e in network.ids if e.container_id in only],
    )


def _with(finding: Finding, *, first_seen: float, confirmed: bool, store: str) -> Finding:
    return Finding(
        finding.kind, finding.network, finding.subnet, finding.ip, finding.container_id,
        first_seen, finding.evidence, finding.releasable, confirmed, store,
    )  # fmt: skip


def _verdict(container_id: str, liveness: LivenessSnapshot) -> tuple[str, list[str]]:
    """(LIVE | TORN_DOWN | ABSENT | UNKNOWN, evidence lines): see liveness.verdict."""
    verdict = container_verdict(container_id, liveness)
    if verdict.kind == UNKNOWN and liveness.seen(container_id):
        return UNKNOWN_STALE, list(verdict.evidence)
    return verdict.kind, list(verdict.evidence)


UNKNOWN_STALE = "unknown-stale"  # known to a source, but not known to be torn down


def _kind(verdict: str) -> tuple[str, bool]:
    """The finding kind for a verdict that is not live, and whether it may be released."""
    kind = STALE if verdict in (TORN_DOWN, UNKNOWN_STALE) else LEAKED
    return kind, verdict not in (UNKNOWN, UNKNOWN_STALE)


def _container_findings(
    allocations: list[Allocation],
    ids: list[IdsEntry],
    liveness: LivenessSnapshot,
    now: float,
    indexed: bool = True,
) -> list[Finding]:
    """``indexed`` False: the store has no ids index, an allocation is consistent alone."""
    entries = {e.container_id: e for e in ids}
    findings: list[Finding] = []
    seen_ids: set[str] = set()
    for a in allocations:
        seen_ids.add(a.container_id)
        verdict, evidence = _verdict(a.container_id, liveness)
        entry = entries.get(a.container_id)
        consistent = not indexed or (entry is not None and a.ip in entry.ips)
        if not consistent:
            evidence = [*evidence, f"no ids entry lists {a.ip} for this container"]
        if verdict == LIVE:
            if connected(a.container_id, a.network, liveness) is False:
                evidence = [*evidence, f"podman says it is not connected to network {a.network}"]
                consistent = False
            if not consistent:
                findings.append(_finding(DANGLING, a, evidence, now, releasable=False))
            continue
        kind, releasable = _kind(verdict)
        findings.append(_finding(kind, a, evidence, now, releasable=releasable))
    held = {(a.container_id, a.ip) for a in allocations}
    for entry in ids:
        missing = [ip for ip in entry.ips if (entry.container_id, ip) not in held]
        if not missing and entry.container_id in seen_ids:
            continue  # consistent, judged with its allocations
        verdict, evidence = _verdict(entry.container_id, liveness)
        note = f"ids entry lists {', '.join(missing) or 'no IP'} not held by this container"
        evidence = [*evidence, note]
        if verdict == LIVE:
            kind, releasable = DANGLING, False
        else:
            kind, releasable = _kind(verdict)
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


def _orphan_network(name: str, state: IpamState, liveness: LivenessSnapshot, now: float) -> Finding:
    network = state.network(name)
    assert network is not None
    holders = {a.container_id for s in network.subnets for a in s.allocations}
    holders.update(e.container_id for e in network.ids)
    live = sorted(
        cid for cid in holders if _verdict(cid, liveness)[0] in (LIVE, UNKNOWN, UNKNOWN_STALE)
    )
    evidence = [f"no network config named {name!r}", f"{len(holders)} container(s) hold addresses"]
    if live:
        evidence.append("held by live or unknown container(s): " + ", ".join(c[:12] for c in live))
    return Finding(ORPHAN_NETWORK, name, None, None, None, now, tuple(evidence), not live)
