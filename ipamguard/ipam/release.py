"""Releasing a container's allocations: what podman's deallocIPs does, and more.

podman releases what the container's ``ids`` entry lists. A leak is often
inconsistent (an IP key without ``ids`` entry, or the reverse), so the plan is
made from the whole file: every IP key whose value is the container ID, and
every ``ids`` entry of that ID, in the networks asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipamguard.bolt import Tx
from ipamguard.errors import NotFound, UsageError
from ipamguard.ipam.model import (
    IDS_BUCKET,
    Allocation,
    IdsEntry,
    IpamState,
    ip_from_key,
    ip_to_key,
    parse_ip_list,
    printable,
)

MIN_PREFIX = 3


@dataclass(frozen=True)
class ReleasePlan:
    container_id: str
    allocations: tuple[Allocation, ...]
    ids_entries: tuple[IdsEntry, ...]

    def is_empty(self) -> bool:
        return not self.allocations and not self.ids_entries


def plan_release(tx: Tx, wanted: str, network: str | None = None) -> ReleasePlan:
    """Every IP key and ids entry of the container that ``wanted`` names (full ID or a
    unique prefix), found by a byte search over the file rather than a full walk."""
    if len(wanted) < MIN_PREFIX:
        raise UsageError(f"container ID prefix {wanted!r} is too short (at least {MIN_PREFIX})")
    needle = wanted.encode()
    allocations: list[Allocation] = []
    entries: list[IdsEntry] = []
    for path, key, value in tx.search(needle):
        if len(path) != 2 or (network is not None and printable(path[0]) != network):
            continue
        name, child = printable(path[0]), path[1]
        if child == IDS_BUCKET and key.startswith(needle):
            ips = parse_ip_list(value)
            entries.append(IdsEntry(name, printable(key), ips if ips is not None else ()))
        elif child != IDS_BUCKET and value.startswith(needle):
            ip = ip_from_key(key)
            if ip is not None:
                allocations.append(Allocation(name, printable(child), ip, printable(value)))
    known = {a.container_id for a in allocations} | {e.container_id for e in entries}
    if network is not None and tx.bucket(network.encode()) is None:
        raise NotFound(f"network {network!r} has no bucket in the database")
    if not known:
        where = f" in network {network}" if network else ""
        raise NotFound(f"no allocation of container {wanted}{where} in the database")
    container_id = wanted if wanted in known else _unique(wanted, known)
    return ReleasePlan(
        container_id,
        tuple(a for a in allocations if a.container_id == container_id),
        tuple(e for e in entries if e.container_id == container_id),
    )


def plan_from_state(state: IpamState, container_id: str) -> ReleasePlan:
    """Every allocation and ids entry of exactly ``container_id`` in ``state``."""
    return ReleasePlan(
        container_id,
        tuple(a for a in state.allocations() if a.container_id == container_id),
        tuple(e for e in state.ids_entries() if e.container_id == container_id),
    )


def _unique(wanted: str, known: set[str]) -> str:
    if len(known) > 1:
        raise UsageError(f"container ID prefix {wanted!r} is ambiguous: {', '.join(sorted(known))}")
    return known.pop()


def apply_release(tx: Tx, plan: ReleasePlan) -> None:
    """Delete the plan's keys in ``tx`` (the same snapshot the plan was made from)."""
    for allocation in plan.allocations:
        network = tx.bucket(allocation.network.encode())
        subnet = network.bucket(allocation.subnet.encode()) if network else None
        key = ip_to_key(allocation.ip)
        if subnet is None or subnet.get(key) != allocation.container_id.encode():
            raise AssertionError(f"allocation moved under the plan: {allocation}")
        subnet.delete(key)
    for entry in plan.ids_entries:
        network = tx.bucket(entry.network.encode())
        ids = network.bucket(IDS_BUCKET) if network else None
        if ids is None or ids.get(entry.container_id.encode()) is None:
            raise AssertionError(f"ids entry moved under the plan: {entry}")
        ids.delete(entry.container_id.encode())
