"""The reconciler: every finding kind, every liveness combination (pure, no I/O)."""

from __future__ import annotations

import pytest

from ipamguard.ipam.model import Allocation, IdsEntry, IpamState, Malformed, Network, Subnet
from ipamguard.kinds import DANGLING, LEAKED, MALFORMED, ORPHAN_NETWORK, STALE
from ipamguard.liveness.model import (
    NETWORK_SET_UP,
    NETWORK_TORN_DOWN,
    ContainerInfo,
    LivenessSnapshot,
    merge,
)
from ipamguard.reconcile import reconcile

A = "a" * 64
B = "b" * 64
C = "c" * 64


def Seen(
    states: dict[str, str] | None = None,
    failures: tuple[str, ...] = (),
    network: dict[str, str | None] | None = None,
) -> LivenessSnapshot:
    """A liveness snapshot as data: container ID -> podman's state (and network)."""
    observations = tuple(
        ContainerInfo(cid, st, "podman-api", network=(network or {}).get(cid))
        for cid, st in (states or {}).items()
    )
    return LivenessSnapshot(0.0, merge(observations), failures, observations)


def network(name: str, holders: dict[str, str], ids: dict[str, tuple[str, ...]]) -> Network:
    subnet = Subnet("10.0.0.0/24", allocations=[
        Allocation(name, "10.0.0.0/24", ip, cid) for ip, cid in holders.items()
    ])  # fmt: skip
    return Network(name, [subnet], [IdsEntry(name, cid, ips) for cid, ips in ids.items()])


def state(*networks: Network, malformed: list[Malformed] | None = None) -> IpamState:
    return IpamState(txid=7, networks=list(networks), malformed=malformed or [])


def kinds(result: object) -> list[tuple[str, str | None, str | None, bool]]:
    return sorted(
        (f.kind, f.ip, f.container_id, f.releasable)
        for f in result.findings  # type: ignore[attr-defined]
    )


def consistent() -> IpamState:
    return state(network("n", {"10.0.0.2": A, "10.0.0.3": B}, {A: ("10.0.0.2",), B: ("10.0.0.3",)}))


@pytest.mark.parametrize(
    "live_state",
    ["running", "paused", "created", "initialized", "stopping", "stopped", "removing", "unknown"],
)
def test_live_containers_are_never_findings(live_state: str) -> None:
    result = reconcile(consistent(), Seen({A: live_state, B: "running"}), {"n"}, 100.0, {}, 0)
    assert result.findings == []
    assert (result.networks, result.allocations) == (1, 2)


def test_absent_container_is_leaked_and_releasable() -> None:
    result = reconcile(consistent(), Seen({B: "running"}), {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(LEAKED, "10.0.0.2", A, True)]
    assert result.findings[0].confirmed  # grace 0


def test_exited_and_torn_down_holding_addresses_is_stale() -> None:
    seen = Seen({A: "exited", B: "running"}, network={A: NETWORK_TORN_DOWN})
    result = reconcile(consistent(), seen, {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(STALE, "10.0.0.2", A, True)]


def test_exited_with_its_network_still_set_up_is_live() -> None:
    """Cleanup never ran (conmon's cleanup killed): `podman start` reuses the addresses."""
    seen = Seen({A: "exited", B: "running"}, network={A: NETWORK_SET_UP})
    assert reconcile(consistent(), seen, {"n"}, 100.0, {}, 0).findings == []


def test_exited_without_knowing_the_network_is_stale_never_releasable() -> None:
    result = reconcile(consistent(), Seen({A: "exited", B: "running"}), {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(STALE, "10.0.0.2", A, False)]


def test_a_runtime_state_entry_keeps_an_exited_container_live() -> None:
    """runc's state dir exists until podman's cleanup deletes the container."""
    observations = (
        ContainerInfo(A, "exited", "podman-api", network=NETWORK_TORN_DOWN),
        ContainerInfo(A, "stopped", "runc"),
        ContainerInfo(B, "running", "podman-api"),
    )
    seen = LivenessSnapshot(0.0, merge(observations), (), observations)
    assert reconcile(consistent(), seen, {"n"}, 100.0, {}, 0).findings == []


def test_torn_down_but_blind_elsewhere_is_not_releasable() -> None:
    seen = Seen({A: "exited", B: "running"}, ("in-flight: pid 9",), {A: NETWORK_TORN_DOWN})
    result = reconcile(consistent(), seen, {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(STALE, "10.0.0.2", A, False)]


def test_blind_liveness_never_releases() -> None:
    seen = Seen({B: "running"}, failures=("podman API: connection refused",))
    result = reconcile(consistent(), seen, {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(LEAKED, "10.0.0.2", A, False)]
    assert not result.findings[0].confirmed
    assert "unknown" in result.findings[0].evidence[0]
    assert not result.liveness_complete


def test_running_in_any_source_wins_even_when_blind_elsewhere() -> None:
    seen = Seen({A: "running", B: "running"}, failures=("podman API: down",))
    assert reconcile(consistent(), seen, {"n"}, 100.0, {}, 0).findings == []


def test_ip_key_without_ids_entry_of_live_container_is_dangling_report_only() -> None:
    s = state(network("n", {"10.0.0.2": A}, {}))
    result = reconcile(s, Seen({A: "running"}), {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(DANGLING, "10.0.0.2", A, False)]


def test_ids_entry_pointing_elsewhere_of_live_container_is_dangling() -> None:
    s = state(network("n", {"10.0.0.2": B}, {A: ("10.0.0.2",), B: ("10.0.0.2",)}))
    result = reconcile(s, Seen({A: "running", B: "running"}), {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(DANGLING, None, A, False)]


def test_ids_entry_alone_of_absent_container_is_leaked() -> None:
    s = state(network("n", {}, {A: ("10.0.0.9",)}))
    result = reconcile(s, Seen({}), {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(LEAKED, None, A, True)]


def test_leaked_ip_key_without_ids_entry_says_so() -> None:
    s = state(network("n", {"10.0.0.2": A}, {}))
    (finding,) = reconcile(s, Seen({}), {"n"}, 100.0, {}, 0).findings
    assert finding.kind == LEAKED
    assert any("no ids entry" in line for line in finding.evidence)


def test_grace_needs_two_observations_far_enough_apart() -> None:
    s = consistent()
    seen = Seen({B: "running"})
    first = reconcile(s, seen, {"n"}, 100.0, {}, 60)
    assert not first.findings[0].confirmed
    history = {f.key: f.first_seen for f in first.findings}
    assert not reconcile(s, seen, {"n"}, 159.0, history, 60).findings[0].confirmed
    later = reconcile(s, seen, {"n"}, 160.0, history, 60).findings[0]
    assert later.confirmed and later.first_seen == 100.0


def test_orphan_network_releasable_only_without_live_holders() -> None:
    s = state(consistent().networks[0], network("gone", {"10.0.0.5": C}, {C: ("10.0.0.5",)}))
    dead = reconcile(s, Seen({A: "running", B: "running"}), {"n"}, 1.0, {}, 0)
    assert kinds(dead) == [(ORPHAN_NETWORK, None, None, True)]
    alive = reconcile(s, Seen({A: "running", B: "running", C: "running"}), {"n"}, 1.0, {}, 0)
    assert kinds(alive) == [(ORPHAN_NETWORK, None, None, False)]


def test_unknown_network_names_mean_no_orphans() -> None:
    s = state(network("gone", {}, {}))
    assert reconcile(s, Seen({}), None, 1.0, {}, 0).findings == []


def test_malformed_entries_are_reported_never_released() -> None:
    s = state(malformed=[Malformed("n", "10.0.0.0/24", "0x0102", "not a 4- or 16-byte IP")])
    result = reconcile(s, Seen({}), {"n"}, 1.0, {}, 0)
    assert kinds(result) == [(MALFORMED, None, None, False)]


def test_a_live_container_holding_an_address_on_a_network_it_left_is_dangling() -> None:
    """podman says the container is connected to other networks only (a restore put an
    old allocation back, a disconnect whose teardown failed): reported, never released."""
    observations = (ContainerInfo(A, "running", "podman-api", networks=("other",)),
                    ContainerInfo(B, "running", "podman-api", networks=("n",)))  # fmt: skip
    seen = LivenessSnapshot(0.0, merge(observations), (), observations)
    result = reconcile(consistent(), seen, {"n"}, 100.0, {}, 0)
    assert kinds(result) == [(DANGLING, "10.0.0.2", A, False)]
    assert "not connected to network n" in result.findings[0].evidence[-1]
