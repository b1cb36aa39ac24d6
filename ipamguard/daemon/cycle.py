"""The daemon's reconcile cycle: observe, judge, alert once, repair where opted in.

Between cycles it keeps, per finding, when it was first seen (the grace
period needs two observations far enough apart) and what was last alerted
(a finding is alerted once, and again only when it changes).
"""

from __future__ import annotations

import dataclasses

import structlog

from ipamguard import messages
from ipamguard.capacity import read_gateways
from ipamguard.config import Config
from ipamguard.context import Context, daemon_context
from ipamguard.daemon.capacitywatch import CapacityWatch
from ipamguard.daemon.cycle_api import CycleResult
from ipamguard.daemon.linkwatch import LinkWatch
from ipamguard.daemon.measures import measure
from ipamguard.daemon.memory import return_free_memory
from ipamguard.doctor.analysis import MANAGED
from ipamguard.errors import Changed, IpamguardError
from ipamguard.healing import Observation, RepairResult, judge, observe, repair
from ipamguard.ipam.model import PageCache
from ipamguard.liveness.podman_api import FAILURE_PREFIX
from ipamguard.reconcile import Finding, FindingKey, Reconciliation
from ipamguard.stores.base import AllocationStore, StoreSnapshot
from ipamguard.stores.netavark import NetavarkStore

log = structlog.get_logger("ipamguard.cycle")
Signature = tuple[str, bool, tuple[str, ...]]
RECHECK_AFTER_CHANGE = 0.2  # seconds: ipam.db changed between the look and the write
# seconds: findings judged while a source could not answer (another root at work, podman
# away) are looked at again this soon, not only at the next event or resync
BLIND_RECHECK = 2.0


def make_cycle(user: bool = False) -> ReconcileCycle:
    return ReconcileCycle(user=user)


class ReconcileCycle:
    def __init__(self, links: LinkWatch | None = None, *, user: bool = False) -> None:
        self.user = user
        self.first_seen: dict[FindingKey, float] = {}
        self.alerted: dict[FindingKey, Signature] = {}
        self.refusals: dict[FindingKey, str] = {}
        # systemd-networkd manages the host's links; a rootless podman's are its own
        self.links = links if links is not None else (None if user else LinkWatch())
        self.capacity = CapacityWatch()
        # what the last read of each store parsed, by (kind, location): the next read
        # parses only the pages that changed
        self.page_caches: dict[tuple[str, str], PageCache] = {}
        self.judged: dict[tuple[str, str], Reconciliation] = {}  # the last, by store
        self.config_seen: Config | None = None
        self.ctx: Context | None = None  # built at every full look (and kept between)

    def run(self, reason: str, config: Config, focus: frozenset[str] | None = None) -> CycleResult:
        result = self._reconcile(config, focus)
        conflicts, problems, wait = self._check_links(full=focus is None)
        if wait:  # left out during a burst: a recheck once it is due
            recheck = result.recheck_after
            result = dataclasses.replace(
                result, recheck_after=wait if recheck is None else min(recheck, wait)
            )
        if result.measures is not None:
            self.capacity.run(result.measures.subnets, config.alerts.subnet_free_percent)
            measures = dataclasses.replace(
                result.measures, networkd_conflicts=conflicts, link_problems=problems
            )
            result = dataclasses.replace(result, measures=measures)
        return_free_memory()  # the cycle's transient peak, back to the kernel
        return result

    def _check_links(self, full: bool) -> tuple[int | None, int | None, float]:
        """(links networkd manages, every link problem; None where it did not look,
        seconds before a check left out is due: 0 if none was). A full look checks;
        a focused one checks unless the last check is younger than the link watch's
        interval (the counts are then the last check's)."""
        if self.links is None:
            return None, None, 0.0
        wait = 0.0 if full else self.links.due_in()
        if not wait:
            try:
                self.links.run()
            except IpamguardError as error:  # the doctor part never stops the IPAM part
                log.debug("link check failed", error=str(error))
                return None, None, 0.0
        kinds = [kind for kind, _ in self.links.alerted]
        return kinds.count(MANAGED), len(kinds), wait

    def _reconcile(self, config: Config, focus: frozenset[str] | None) -> CycleResult:
        if config != self.config_seen:  # another configuration: look at everything
            focus, self.config_seen = None, config
        if focus is None or self.ctx is None:  # podman's own configuration read again too
            self.ctx = daemon_context(config, self.user)
        ctx = self.ctx
        grace = config.repair.grace_seconds
        judged = [self._judge(ctx, store, grace, focus) for store in ctx.stores()]
        findings = [f for _, _, result in judged for f in result.findings]
        current = {f.key: f for f in findings}
        self.first_seen = {key: f.first_seen for key, f in current.items()}
        self._forget(set(current))
        for finding in findings:
            self._alert(finding)
        repaired: list[Finding] = []
        outcomes: list[RepairResult] = []
        waits = [_next_confirmation(r, grace, o.taken_at) for _, o, r in judged]
        recheck = min((w for w in waits if w is not None), default=None)
        complete = all(r.liveness_complete for _, _, r in judged)
        if not complete and findings:  # judge again once the blind spot may have ended
            recheck = min(recheck if recheck is not None else BLIND_RECHECK, BLIND_RECHECK)
        if config.repair.enabled and complete:
            for store, observation, result in judged:
                try:
                    outcome = self._repair(
                        ctx, store, observation, result, set(config.repair.kinds)
                    )
                except Changed as changed:  # podman wrote meanwhile: judge again, soon
                    log.debug("repair deferred", reason=str(changed))
                    outcome, recheck = RepairResult(), RECHECK_AFTER_CHANGE
                outcomes.append(outcome)
                repaired += outcome.released
            for finding in repaired:
                self.first_seen.pop(finding.key, None)
                self.alerted.pop(finding.key, None)
        failures = [f for _, _, r in judged for f in r.liveness_failures]
        return CycleResult(
            networks=sum(r.networks for _, _, r in judged),
            allocations=sum(r.allocations for _, _, r in judged) - sum(1 for f in repaired if f.ip),
            open_findings=len(findings) - len(repaired),
            repaired=len(repaired),
            podman_ok=not any(f.startswith(FAILURE_PREFIX) for f in failures),
            repair_enabled=config.repair.enabled,
            recheck_after=recheck if config.repair.enabled else None,
            measures=measure(
                [(store.kind, observation.state) for store, observation, _ in judged],
                findings,
                outcomes,
                read_gateways(ctx.paths.network_dir),
            ),
        )

    def _judge(
        self, ctx: Context, store: AllocationStore, grace: float, focus: frozenset[str] | None
    ) -> tuple[AllocationStore, Observation, Reconciliation]:
        """Observe and judge one store: everything (``focus`` None), or, focused, the
        containers named, those whose allocations changed and those with open findings."""
        where = (store.kind, store.location)
        cache = None
        if isinstance(store, NetavarkStore):
            cache = store.cache = self.page_caches.setdefault(where, PageCache())
        previous = self.judged.get(where)

        def only_of(snapshot: StoreSnapshot) -> tuple[frozenset[str], frozenset[str]] | None:
            touched = cache.touched if cache is not None else None
            if focus is None or previous is None or touched is None or cache is None:
                return None
            open_ids = {f.container_id for f in previous.findings if f.container_id}
            only = focus | touched | open_ids
            # a container that holds nothing (any more) has nothing to judge: not asked
            return only, frozenset(c for c in only if c in cache.holders)

        observation = observe(ctx, store, only_of)  # a store that does not exist yet: empty
        result = judge(observation, self.first_seen, grace, previous)
        self.judged[where] = result
        return store, observation, result

    def _alert(self, finding: Finding) -> None:
        signature = (finding.kind, finding.releasable, finding.evidence)
        if self.alerted.get(finding.key) == signature:
            return
        self.alerted[finding.key] = signature
        log.warning(
            finding.describe(),
            message_id=messages.LEAK_FOUND,
            **_fields(finding),
            releasable=finding.releasable,
            evidence="; ".join(finding.evidence),
        )

    def _forget(self, keys: set[FindingKey]) -> None:
        for key in [k for k in self.alerted if k not in keys]:
            store, kind, network, subnet, ip, container_id = key
            del self.alerted[key]
            self.refusals.pop(key, None)
            log.info(
                f"{kind} finding gone: {' '.join(x for x in (network, subnet, ip) if x)}",
                message_id=messages.FINDING_RESOLVED,
                finding=kind, network=network, subnet=subnet, ip=ip, container_id=container_id,
                store=store,
            )  # fmt: skip

    def _repair(
        self,
        ctx: Context,
        store: AllocationStore,
        observation: Observation,
        result: Reconciliation,
        kinds: set[str],
    ) -> RepairResult:
        ready = [f for f in result.findings if f.kind in kinds and f.releasable and f.confirmed]
        if not ready:
            return RepairResult()
        outcome = repair(ctx, store, observation, ready, kinds, ctx.prober())
        for finding in outcome.released:
            log.warning(
                "released " + finding.describe(),
                message_id=messages.LEAK_RELEASED,
                **_fields(finding),
                backup=outcome.backup,
                lock_hold_ms=round(outcome.lock_hold * 1000, 3),
                notes="; ".join(outcome.notes) or None,
            )
        for finding, why in outcome.refused:
            if self.refusals.get(finding.key) == why:
                continue
            self.refusals[finding.key] = why
            log.warning(
                "did not release " + finding.describe() + ": " + why,
                message_id=messages.REPAIR_REFUSED,
                **_fields(finding),
                reason=why,
            )
        return outcome


def _fields(finding: Finding) -> dict[str, str | None]:
    return {
        "store": finding.store,
        "finding": finding.kind,
        "network": finding.network,
        "subnet": finding.subnet,
        "ip": finding.ip,
        "container_id": finding.container_id,
    }


def _next_confirmation(result: Reconciliation, grace: float, now: float) -> float | None:
    """Seconds until the next releasable finding's grace period ends, if any."""
    waits = [
        f.first_seen + grace - now for f in result.findings if f.releasable and not f.confirmed
    ]
    return max(min(waits), 0.0) if waits else None
