"""The one write path: a decision applied only to the very state it was made on.

repair, release and restore all write through ``write_fenced``:

1. podman's network lock(s) of the store are taken (created if missing, as podman
   does; never written without them). While they are held, no podman on this host
   can set up or tear down a network: the store cannot change under us, and every
   setup that allocated before is finished (its interfaces answer on the bridge).
2. The sources that take no podman lock (runtime state, conmon, in-flight
   processes) are asked again. podman's API is never asked under the network
   lock: a ``podman start`` holding a container lock while it waits for the
   network lock would make that call wait until it times out.
3. The store is read again (a validated snapshot) and its **fence** compared with
   the one the decision was judged on. Any difference, even a change made and
   undone (a ``podman stop`` then ``start`` giving back the same addresses), voids
   the decision: ``Changed`` is raised and nothing is written.
4. ``decide`` re-makes the plan on that transaction with the fresh local liveness.
5. Each address to be released is probed on its network (``prober``, or the
   store's own for its networks): an answer means something holds it, whatever
   podman says, and that release is refused.
6. The changes are made in memory, then the backup records exactly what they
   remove (synced to disk), then the commit, under the store's own file lock,
   which is held for milliseconds (probing happens before, without it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ipamguard.context import Context
from ipamguard.errors import Changed
from ipamguard.liveness import LivenessSnapshot, collect
from ipamguard.stores.base import AllocationStore, WriteTx

T = TypeVar("T")


class ProbeAnswer(Protocol):
    """What a probe of one address found (see ipamguard.liveness.probe)."""

    @property
    def status(self) -> str: ...  # "in-use", "silent" or "impossible"

    @property
    def reason(self) -> str: ...


# {network name: addresses} -> {network name: {address: answer}}, all probed at once
Prober = Callable[[Mapping[str, Sequence[str]]], Mapping[str, Mapping[str, ProbeAnswer]]]


@dataclass
class Action(Generic[T]):
    """One change that the decision wants, with the addresses it frees."""

    items: list[T]
    addresses: list[tuple[str, str]]  # (network, ip): probed before the change
    apply: Callable[[WriteTx], None]


@dataclass
class Decision(Generic[T]):
    actions: list[Action[T]] = field(default_factory=list)
    refused: list[tuple[T, str]] = field(default_factory=list)


@dataclass
class FencedResult(Generic[T]):
    done: list[T] = field(default_factory=list)
    refused: list[tuple[T, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. where probing was impossible
    backup: str | None = None
    written: bool = False
    lock_hold: float = 0.0  # seconds the store's exclusive file lock was held
    fence: object = None  # after the write
    locks: list[str] = field(default_factory=list)  # podman's network locks held


def write_fenced(
    ctx: Context,
    store: AllocationStore,
    judged: object,
    decide: Callable[[WriteTx, LivenessSnapshot], Decision[T]],
    prober: Prober | None,
    ask_local: bool = True,
) -> FencedResult[T]:
    """Apply ``decide``'s actions if the store still holds exactly what was judged.

    ``judged``: the fence of the snapshot the decision was made on. Raises
    ``Changed`` (nothing written) if the store changed since. ``ask_local`` False: the
    operator vouches (``release --force``), the local sources are not asked again.
    """
    from ipamguard.locks import network_locks

    locks = list(ctx.paths.network_locks if store.network_locks is None else store.network_locks)
    if prober is not None and store.prober is not None:
        prober = store.prober  # the store's own networks (CNI's bridges)
    with network_locks(locks, ctx.lock_timeout, ctx.paths.uid, create=ctx.create_locks) as taken:
        local = collect(ctx.local_sources()) if ask_local else LivenessSnapshot(0.0, {})

        def work(wtx: WriteTx) -> FencedResult[T]:
            if wtx.fence != judged:  # (the state itself is parsed only if decide needs it)
                raise Changed(
                    f"{store.location} changed since it was judged "
                    f"({_show(judged)} -> {_show(wtx.fence)}); nothing was written"
                )
            decision = decide(wtx, local)
            result: FencedResult[T] = FencedResult(refused=list(decision.refused))
            actions = decision.actions
            if prober is not None:
                actions = _probed(actions, prober, result, local.doubts)
            elif local.doubts:  # nothing can lift the doubt
                why = "cannot probe the network while " + local.doubts[0]
                result.refused += ((item, why) for a in actions if a.addresses for item in a.items)
                actions = [a for a in actions if not a.addresses]
            if not actions:
                wtx.rollback()
                return result
            for action in actions:
                action.apply(wtx)  # in memory: nothing is written before the commit
                result.done.extend(action.items)
            result.backup = wtx.backup()
            return result

        result, info = store.write(work)
    result.written, result.lock_hold, result.fence = info.written, info.lock_hold, info.fence
    result.locks = taken
    return result


def _probed(
    actions: list[Action[T]], prober: Prober, result: FencedResult[T], doubts: Sequence[str]
) -> list[Action[T]]:
    """The actions none of whose addresses answers on its network, nor, while a source
    has ``doubts``, lies on a network that cannot be probed."""
    wanted: dict[str, list[str]] = {}
    for action in actions:
        for network, ip in action.addresses:
            wanted.setdefault(network, []).append(ip)
    answers = {(n, ip): a for n, found in prober(wanted).items() for ip, a in found.items()}
    kept = []
    for action in actions:
        in_use = [
            f"{ip} answers on network {n}: {answers[(n, ip)].reason}"
            for n, ip in action.addresses
            if (n, ip) in answers and answers[(n, ip)].status == "in-use"
        ]
        if in_use:
            why = "in use on the network (" + "; ".join(in_use) + ")"
            result.refused.extend((item, why) for item in action.items)
            continue
        blind = [
            f"{ip} ({n}) cannot be probed: {answers[(n, ip)].reason}"
            for n, ip in action.addresses
            if (n, ip) in answers and answers[(n, ip)].status == "impossible"
        ]
        if blind and doubts:
            why = "; ".join(blind) + ", and " + doubts[0]
            result.refused.extend((item, why) for item in action.items)
            continue
        result.notes += blind
        kept.append(action)
    return kept


def _show(fence: object) -> str:
    if isinstance(fence, tuple) and len(fence) == 2:
        return f"txid {fence[1]}"
    return "absent" if fence is None else str(fence)
