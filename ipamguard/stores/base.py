"""The boundary of an allocation store.

A store reads a **snapshot** of its allocations (as the store-agnostic
``IpamState``) together with a **fence**: a value that changes whenever anything
in the store changes (bbolt's txid; a digest of files). A write runs ``work`` on
a ``WriteTx`` made from a fresh, fully validated read taken under the store's own
file lock; the caller holds podman's network lock around it and compares fences,
so that a decision made on one snapshot is only ever applied to that snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ipamguard.ipam.model import IpamState
from ipamguard.ipam.release import ReleasePlan

if TYPE_CHECKING:
    from ipamguard.fenced import Prober

T = TypeVar("T")


@dataclass(frozen=True)
class StoreSnapshot:
    state: IpamState
    fence: object  # compare with ==; changes with every change of the store


@dataclass(frozen=True)
class WriteInfo:
    """What a write did at the file level."""

    written: bool
    lock_hold: float  # seconds the store's exclusive file lock was held
    fence: object  # the fence after the write (or as read, when nothing was written)


class WriteTx(Protocol):
    """A change set over one validated snapshot, taken under the store's lock."""

    @property
    def fence(self) -> object:
        """The fence of the snapshot this transaction started from (cheap)."""
        ...

    @property
    def snapshot(self) -> StoreSnapshot:
        """The whole state as of that snapshot (parsed on first use)."""
        ...

    def release(self, plan: ReleasePlan) -> None:
        """Delete the plan's allocations and index entries; each must be exactly as in
        the snapshot (else AssertionError: a bug)."""
        ...

    def find(self, container_id: str, network: str | None = None) -> ReleasePlan:
        """Every allocation and index entry of exactly this ID (NotFound if none)."""
        ...

    def delete_network(self, name: str) -> None: ...

    def replace_all(self, source: object) -> None:
        """Make the store hold exactly ``source`` (a backup read by ``read_backup``)."""
        ...

    def record_conflicts(self, record: Mapping[str, Any]) -> list[str]:
        """What a release record (ipamguard.backups) would put back over something that
        holds it now, one line each."""
        ...

    def record_in_place(self, record: Mapping[str, Any]) -> bool:
        """True if everything a release record removed is there as it was (putting it
        back would change nothing)."""
        ...

    def put_back(self, record: Mapping[str, Any]) -> int:
        """Re-insert what a release record removed; how many entries were put back."""
        ...

    def backup(self) -> str:
        """Save what this transaction's changes remove (called after the changes, before
        the commit), synced; return where (BackupError: nothing is written)."""
        ...

    def rollback(self) -> None:
        """Write nothing."""
        ...


class AllocationStore(Protocol):
    kind: str  # "netavark", "cni"
    location: str  # the file or directory
    # podman's network lock files of this store, taken in this order around every
    # write (None: those of the context's network config dir, ctx.paths.network_locks)
    network_locks: tuple[str, ...] | None
    # probes this store's networks on their bridges (CNI's); None: the caller's prober
    prober: Prober | None

    def read(self) -> StoreSnapshot:
        """The store as of now (an empty state if it does not exist yet)."""
        ...

    def find(self, wanted: str, network: str | None = None) -> tuple[ReleasePlan, object]:
        """A container's allocations by full ID or unique prefix, and the fence they
        were read at (NotFound, UsageError for an ambiguous prefix)."""
        ...

    def write(self, work: Callable[[WriteTx], T]) -> tuple[T, WriteInfo]:
        """Run ``work`` on a fresh snapshot and commit what it changed, under the
        store's own file lock (held for milliseconds)."""
        ...
