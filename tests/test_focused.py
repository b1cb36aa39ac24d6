"""A focused look (the daemon after an event or a change of ipam.db) finds what a full
look finds, at the cost of what changed: the pages of ipam.db parsed again, the
containers asked about, the findings judged again. Files written by Go's bbolt."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops import delete, put
from oracle_tool import Oracle, container_id
from test_healing import NET, SUBNET, Scripted, context, ip_of, running

from ipamguard.bolt import DB
from ipamguard.healing import judge, observe
from ipamguard.ipam.model import _VALUE, Allocation, IdsEntry, PageCache, ip_to_key, read_ipam
from ipamguard.liveness import ContainerInfo
from ipamguard.liveness.model import Interest

pytestmark = pytest.mark.oracle


class Asked(Scripted):
    """A scripted podman that records which containers each look asked about."""

    def __init__(self, answers: list[list[ContainerInfo] | str]) -> None:
        super().__init__(answers)
        self.only: list[frozenset[str] | None] = []

    def observe(self, holders: object = ()) -> list[ContainerInfo]:  # type: ignore[override]
        only = getattr(holders, "only", None)
        self.only.append(only)
        answer = super().observe()
        return [c for c in answer if only is None or c.id in only]


def cached_reader(db: Path, cache: PageCache) -> Callable[[], Any]:
    """A read of ``db`` through ``cache``, as the daemon's cycles read it."""

    def read() -> Any:
        with DB.open(db) as handle, handle.view() as tx:
            return read_ipam(tx, cache)

    return read


def test_the_page_cache_parses_what_changed_and_names_who(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, "10.89.0.0/16", 3000, ids_per_tx=500)
    cache = PageCache()
    read = cached_reader(db, cache)
    first = read()
    assert cache.touched is None and cache.parsed > 10
    assert len(cache.holders) == 3000 and len(cache.holders[container_id(1234)]) == 2
    assert read() == first and cache.touched == frozenset() and cache.parsed == 0
    victim = container_id(1234)
    net, sub = NET.encode(), b"10.89.0.0/16"
    key = next(
        bytes.fromhex(k) for k in [ip_to_key(f"10.89.{(1234 + 2) // 256}.{(1234 + 2) % 256}").hex()]
    )
    oracle.apply(db, [[delete([net, sub], key), delete([net, b"ids"], victim.encode())]])
    oracle.ipam_gen(db, NET, "10.89.0.0/16", 1, first_index=7000)
    after = read()
    with DB.open(db) as handle, handle.view() as tx:
        full = read_ipam(tx)
    assert after == full  # the same state as a full parse
    assert cache.parsed <= 8
    assert cache.walked <= 8  # the paths to the changed leaves; other subtrees taken whole
    assert cache.touched == {victim, container_id(7000)}
    assert victim not in cache.holders and len(cache.holders[container_id(7000)]) == 2
    held = after.held_by([container_id(7000), victim])
    assert held == [
        a
        for n in full.networks
        for s in n.subnets
        for a in s.allocations
        if a.container_id == container_id(7000)
    ] + [e for n in full.networks for e in n.ids if e.container_id == container_id(7000)]
    assert len(held) == 2 and full.held_by([victim]) is None  # read without the cache
    assert read() == after and cache.parsed == cache.walked == 0
    assert after.held_by([victim]) is None  # the cache has read again since: no index


def test_an_address_given_to_another_container_in_place_names_both(
    oracle: Oracle, tmp_path: Path
) -> None:
    """Same key, other value on the same page: the old entry goes, the new one comes
    (the read's diff compares the entries' values, as their equality does)."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, "10.89.0.0/16", 500, ids_per_tx=500)
    cache = PageCache()
    read = cached_reader(db, cache)
    read()
    old, new = container_id(42), container_id(9000)
    net = NET.encode()
    ip = ip_to_key(ip_of(42))
    oracle.apply(db, [[put([net, b"10.89.0.0/16"], ip, new.encode())]])
    after = read()
    assert cache.touched == {old, new}
    assert [type(e).__name__ for e in cache.holders[old]] == ["IdsEntry"]  # still in ``ids``
    assert [(a.ip, a.container_id) for a in cache.holders[new]] == [(ip_of(42), new)]
    with DB.open(db) as handle, handle.view() as tx:
        assert after == read_ipam(tx)


def test_entries_are_compared_by_exactly_the_fields_their_equality_compares() -> None:
    for entry in (
        Allocation("n", "10.0.0.0/24", "10.0.0.2", "c"),
        IdsEntry("n", "c", ("10.0.0.2",)),
    ):
        compared = tuple(getattr(entry, f.name) for f in dataclasses.fields(entry) if f.compare)
        assert _VALUE[type(entry)](entry) == compared


def test_the_page_cache_keeps_no_decoded_leaf(oracle: Oracle, tmp_path: Path) -> None:
    """The model takes what it needs from each leaf; the snapshot, kept between cycles,
    holds no decoded copy of the leaves' keys and values (at 65,000 allocations those were
    20 MB of small objects, freed at the next cycle among the objects the model keeps)."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, "10.89.0.0/16", 3000, ids_per_tx=500)
    cache = PageCache()
    with DB.open(db) as handle, handle.view() as tx:
        state = read_ipam(tx, cache)
        snapshot = tx.snapshot
    assert cache.parsed > 10 and len(state.allocations()) == 3000
    kept = [page for page in snapshot.pages.values() if page.is_leaf]
    # the root's and the network's, which name the buckets: no page of allocations
    assert len(kept) <= 2 and all(len(page.keys) <= 2 for page in kept)


def test_a_leaf_changed_below_unchanged_parents_is_read_again(
    oracle: Oracle, tmp_path: Path
) -> None:
    """Bytes changed in place (not as bbolt writes: the parents are as they were) in a
    value that validation does not judge: the page cache takes no subtree that holds
    the changed leaf, and reads what the file says."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, "10.89.0.0/16", 3000, ids_per_tx=500)
    cache = PageCache()
    read = cached_reader(db, cache)
    read()
    data = db.read_bytes()
    old_id, new_id = container_id(1234), container_id(99999)
    at = data.index(ip_to_key("10.89.4.212") + old_id.encode())  # that IP's value
    db.write_bytes(data[: at + 4] + new_id.encode() + data[at + 4 + len(new_id) :])
    after = read()
    with DB.open(db) as handle, handle.view() as tx:
        assert after == read_ipam(tx)
    assert cache.parsed == 1 and 1 <= cache.walked <= 4
    assert cache.touched == {old_id, new_id}


def test_a_focused_look_finds_what_a_full_look_finds(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 20)
    alive = [running(i) for i in range(20) if i not in (3, 4)]
    podman = Asked([alive])
    ctx = context(tmp_path, db, podman)
    s = ctx.stores()[0]
    s.cache = PageCache()  # type: ignore[attr-defined]
    full = judge(observe(ctx, s), {}, grace=0)
    assert sorted(f.container_id for f in full.findings) == sorted(
        [container_id(3), container_id(4)]
    )
    # container 5 dies without a teardown (an event names it); 3 is removed by podman
    podman.answers = [[c for c in alive if c.id != container_id(5)]]
    net, sub = NET.encode(), SUBNET.encode()
    oracle.apply(db, [[delete([net, sub], ip_to_key(ip_of(3))),
                       delete([net, b"ids"], container_id(3).encode())]])  # fmt: skip

    def only_of(snapshot: object) -> tuple[frozenset[str], frozenset[str]]:
        cache = s.cache  # type: ignore[attr-defined]
        assert cache.touched == {container_id(3)}
        only = frozenset({container_id(5)}) | cache.touched | {container_id(3), container_id(4)}
        return only, frozenset(c for c in only if c in cache.holders)

    focused_obs = observe(ctx, s, only_of)
    # asked about those only, and not about 3, which holds nothing any more
    assert podman.only[-1] == {container_id(i) for i in (4, 5)}
    focused = judge(focused_obs, {}, 0, full)
    everything = judge(observe(ctx, s), {}, 0)
    key = lambda f: (f.kind, f.ip, f.container_id)  # noqa: E731
    assert sorted(map(key, focused.findings)) == sorted(map(key, everything.findings))
    assert sorted(f.container_id for f in focused.findings) == sorted(
        [container_id(4), container_id(5)]
    )


def test_a_focused_look_carries_orphan_networks_over(oracle: Oracle, tmp_path: Path) -> None:
    """An orphan network involves every holder: judged at full looks only, kept between."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 3)
    oracle.ipam_gen(db, "gone", "10.90.0.0/24", 2, first_index=100)
    ctx = context(tmp_path, db, Asked([[running(i) for i in range(3)]]))
    s = ctx.stores()[0]
    s.cache = PageCache()  # type: ignore[attr-defined]
    full = judge(observe(ctx, s), {}, grace=0)
    assert [(f.kind, f.network) for f in full.findings] == [("orphan-network", "gone")]
    seen = {f.key: f.first_seen for f in full.findings}
    focused = judge(observe(ctx, s, lambda _: (frozenset(), frozenset())), seen, 0, full)
    assert focused.findings == full.findings
    assert Interest.of(["a"], None).only is None
