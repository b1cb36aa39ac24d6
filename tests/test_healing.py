"""repair() on a Go-written ipam.db, through the one fenced write path.

The liveness sources and the prober here are data (lists of containers, a failure,
answers per address) standing in for podman's API, /proc and the network; the real
ones are tested against a real podman in tests/liveness and tests/e2e. The file is
real (written by Go's bbolt), the locks are real, and every write ends with Go's
consistency check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ops import delete, put
from oracle_tool import Oracle, container_id

from ipamguard.context import Context
from ipamguard.errors import Changed, LockUnusable, SourceUnavailable, SourceUncertain
from ipamguard.healing import judge, observe, repair
from ipamguard.ipam.model import ip_to_key
from ipamguard.ipam.paths import PodmanPaths, network_locks
from ipamguard.liveness import ContainerInfo
from ipamguard.liveness.model import NETWORK_SET_UP, NETWORK_TORN_DOWN
from ipamguard.stores.netavark import NetavarkStore

pytestmark = pytest.mark.oracle

NET, SUBNET = "podman1", "10.89.0.0/24"


@dataclass
class Scripted:
    """A liveness source answering from a script: one answer per call."""

    answers: list[list[ContainerInfo] | str]
    name: str = "podman-api"
    calls: int = field(default=0)

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, str):
            raise SourceUnavailable(answer)
        return answer


@dataclass(frozen=True)
class Answer:
    status: str
    reason: str


@dataclass
class Prober:
    """Answers per address; records what it was asked."""

    in_use: set[str] = field(default_factory=set)
    asked: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def __call__(self, wanted: Mapping[str, Sequence[str]]) -> Mapping[str, Mapping[str, Answer]]:
        self.asked.extend((network, tuple(ips)) for network, ips in wanted.items())
        return {network: {ip: self.answer(ip) for ip in ips} for network, ips in wanted.items()}

    impossible: bool = False

    def answer(self, ip: str) -> Answer:
        if self.impossible:
            return Answer("impossible", "macvlan network: a probe from the host cannot reach it")
        if ip in self.in_use:
            return Answer("in-use", "ARP reply from 0a:00:00:00:00:01")
        return Answer("silent", "no answer")


def context(tmp_path: Path, db: Path, api: Scripted, local: Sequence[Scripted] = ()) -> Context:
    networks = tmp_path / "networks"
    networks.mkdir(exist_ok=True)
    (networks / "n.json").write_text('{"name": "podman1"}')
    paths = PodmanPaths(
        db=str(db),
        network_dir=str(networks),
        network_locks=(str(networks / "netavark.lock"),),
        socket_url="unix:///nonexistent",
        runtime_dirs=(),
        backup_dir=str(tmp_path / "backups"),
        uid=os.getuid(),
    )
    return Context(paths, lock_timeout=1.0, backups_keep=5, api=(api,), local=tuple(local))


def store(ctx: Context) -> NetavarkStore:
    return NetavarkStore(ctx.paths.db, ctx.lock_timeout, ctx.paths.backup_dir, ctx.backups_keep)


def running(index: int) -> ContainerInfo:
    return ContainerInfo(container_id(index), "running", "podman-api")


def exited(index: int, network: str | None) -> ContainerInfo:
    return ContainerInfo(container_id(index), "exited", "podman-api", network=network)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ip_of(index: int) -> str:
    return f"10.89.0.{index + 2}"


def heal(ctx: Context, kinds: set[str], prober: Prober | None = None) -> object:
    s = store(ctx)
    observation = observe(ctx, s)
    findings = judge(observation, {}, grace=0).findings
    return repair(ctx, s, observation, findings, kinds, prober)


def test_release_when_both_looks_agree(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 4)
    ctx = context(tmp_path, db, Scripted([[running(0), running(1), running(3)]]))
    s = store(ctx)
    observation = observe(ctx, s)
    findings = judge(observation, {}, grace=0).findings
    assert [(f.kind, f.container_id) for f in findings] == [("leaked", container_id(2))]
    prober = Prober()
    result = repair(ctx, s, observation, findings, {"leaked"}, prober)
    assert [f.container_id for f in result.released] == [container_id(2)]
    assert prober.asked == [(NET, (ip_of(2),))]
    assert oracle.check(db) == []
    assert result.backup is not None and os.stat(result.backup).st_mode & 0o777 == 0o600
    assert judge(observe(ctx, s), {}, grace=0).findings == []


def test_the_network_lock_is_created_like_podman_does(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    lock = Path(ctx.paths.network_locks[0])
    assert not lock.exists()
    heal(ctx, {"leaked"})
    assert lock.is_file()
    assert oracle.check(db) == []


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_a_lock_that_cannot_be_taken_writes_nothing(
    oracle: Oracle, tmp_path: Path, kind: str
) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    lock = Path(ctx.paths.network_locks[0])
    if kind == "directory":
        lock.mkdir()
    else:
        lock.symlink_to(tmp_path / "elsewhere")
    digest = sha(db)
    with pytest.raises(LockUnusable, match="network lock"):
        heal(ctx, {"leaked"})
    assert sha(db) == digest
    assert not (tmp_path / "backups").exists()


def test_a_lock_of_another_owner_writes_nothing(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    Path(ctx.paths.network_locks[0]).touch()
    paths = PodmanPaths(**{**ctx.paths.__dict__, "uid": os.getuid() + 1})
    digest = sha(db)
    with pytest.raises(LockUnusable, match="owned by uid"):
        heal(Context(paths, 1.0, api=ctx.api, local=ctx.local), {"leaked"})
    assert sha(db) == digest


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        ("podman API at unix:///x: connection refused", "could not be asked"),
        ([running(2)], "now live"),
        ([exited(2, NETWORK_SET_UP)], "now live"),  # came back, network set up
        ([exited(2, None)], "now unknown"),
    ],
)
def test_nothing_written_when_the_second_look_disagrees(
    oracle: Oracle, tmp_path: Path, second: list[ContainerInfo] | str, reason: str
) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 3)
    ctx = context(tmp_path, db, Scripted([[running(0), running(1)], second]))
    digest = sha(db)
    result = heal(ctx, {"leaked"})
    assert result.released == []  # type: ignore[attr-defined]
    refused = result.refused  # type: ignore[attr-defined]
    assert refused and reason in refused[0][1]
    assert sha(db) == digest
    assert not (tmp_path / "backups").exists()


def test_local_sources_under_the_lock_can_veto(oracle: Oracle, tmp_path: Path) -> None:
    """runc sees the container right before the write: it lives."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    runc = Scripted([[], [ContainerInfo(container_id(1), "running", "runc")]], name="runc")
    ctx = context(tmp_path, db, Scripted([[running(0)]]), local=[runc])
    digest = sha(db)
    result = heal(ctx, {"leaked"})
    assert result.released == []  # type: ignore[attr-defined]
    assert "now live" in result.refused[0][1]  # type: ignore[attr-defined]
    assert sha(db) == digest


def test_an_address_that_answers_is_never_released(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 3)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    digest = sha(db)
    prober = Prober(in_use={ip_of(1)})
    result = heal(ctx, {"leaked"}, prober)
    assert [f.container_id for f in result.released] == [container_id(2)]  # type: ignore[attr-defined]
    ((finding, why),) = result.refused  # type: ignore[attr-defined]
    assert finding.container_id == container_id(1) and "ARP reply" in why
    assert sha(db) != digest and oracle.check(db) == []
    left = {a["ip"] for n in oracle.ipam_dump(db)["networks"] for s in n["subnets"]
            for a in s["allocations"]}  # fmt: skip
    assert left == {ip_of(0), ip_of(1)}


def test_every_address_answering_writes_nothing(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    digest = sha(db)
    result = heal(ctx, {"leaked"}, Prober(in_use={ip_of(1)}))
    assert result.released == [] and result.backup is None  # type: ignore[attr-defined]
    assert sha(db) == digest


def test_a_change_between_the_look_and_the_write_voids_the_decision(
    oracle: Oracle, tmp_path: Path
) -> None:
    """The adversarial pass's stop/start loop: the same key released and allocated
    again (by podman) after the look. The content is identical; the decision is not
    about this content any more."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    s = store(ctx)
    observation = observe(ctx, s)
    findings = judge(observation, {}, grace=0).findings
    assert [f.container_id for f in findings] == [container_id(1)]
    subnet_path = [NET.encode(), SUBNET.encode()]
    key, value = ip_to_key(ip_of(1)), container_id(1).encode()
    oracle.apply(db, [[delete(subnet_path, key)], [put(subnet_path, key, value)]])
    digest = sha(db)
    with pytest.raises(Changed, match="changed since it was judged"):
        repair(ctx, s, observation, findings, {"leaked"}, Prober())
    assert sha(db) == digest
    assert not (tmp_path / "backups").exists()


def test_stale_means_torn_down(oracle: Oracle, tmp_path: Path) -> None:
    """exited + network torn down: stale, released. exited with its network still set
    up (cleanup never ran) or stopped: live, never a finding."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 4)
    seen = [
        exited(0, NETWORK_TORN_DOWN),
        exited(1, NETWORK_SET_UP),
        ContainerInfo(container_id(2), "stopped", "podman-api"),
        running(3),
    ]
    ctx = context(tmp_path, db, Scripted([seen]))
    s = store(ctx)
    observation = observe(ctx, s)
    findings = judge(observation, {}, grace=0).findings
    assert [(f.kind, f.container_id, f.releasable) for f in findings] == [
        ("stale", container_id(0), True)
    ]
    result = repair(ctx, s, observation, findings, {"stale"}, Prober())
    assert [f.container_id for f in result.released] == [container_id(0)]
    assert oracle.check(db) == []


def test_unconfirmed_findings_wait_for_the_grace_period(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    s = store(ctx)
    observation = observe(ctx, s)
    findings = judge(observation, {}, grace=60).findings
    digest = sha(db)
    result = repair(ctx, s, observation, findings, {"leaked"}, Prober())
    assert result.released == [] and "grace" in result.refused[0][1]
    assert sha(db) == digest


def test_network_locks_follow_the_network_dir() -> None:
    assert network_locks("/x", rootless=True) == ("/x/netavark.lock",)


def test_several_static_ips_of_one_container_in_one_subnet(oracle: Oracle, tmp_path: Path) -> None:
    """podman 6 allows several static IPs per subnet: several keys with the same ID in
    one subnet bucket and an ids list longer than the subnets. Not malformed, not
    dangling; a release removes them all (the file written by Go's bbolt)."""
    from ops import create_bucket

    db = tmp_path / "ipam.db"
    cid = container_id(7)
    net, sub = NET.encode(), SUBNET.encode()
    ips = ["10.89.0.2", "10.89.0.3", "10.89.0.4"]
    oracle.apply(db, [[
        create_bucket([], net), create_bucket([net], sub), create_bucket([net], b"ids"),
        *(put([net, sub], ip_to_key(ip), cid.encode()) for ip in ips),
        put([net, b"ids"], cid.encode(), ('["' + '","'.join(ips) + '"]').encode()),
    ]])  # fmt: skip
    alive = context(tmp_path, db, Scripted([[ContainerInfo(cid, "running", "podman-api")]]))
    assert judge(observe(alive, store(alive)), {}, grace=0).findings == []
    gone = context(tmp_path, db, Scripted([[]]))
    s = store(gone)
    observation = observe(gone, s)
    findings = judge(observation, {}, grace=0).findings
    assert sorted((f.kind, f.ip) for f in findings) == [("leaked", ip) for ip in ips]
    result = repair(gone, s, observation, findings, {"leaked"}, Prober())
    assert len(result.released) == 3
    assert oracle.check(db) == []
    dump = oracle.ipam_dump(db)["networks"][0]
    assert [a for s_ in dump["subnets"] for a in s_["allocations"]] == [] and dump["ids"] == []


@dataclass
class Doubtful:
    """The in-flight source under the unit's sandbox: a podman of unknown storage."""

    name: str = "in-flight"

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        raise SourceUncertain("pid 9 (podman start x): podman whose environment cannot be read")


@pytest.mark.parametrize(
    ("prober", "released"),
    [(Prober(), True), (Prober(impossible=True), False), (None, False)],
    ids=["silent-on-the-bridge", "network-not-probeable", "no-prober"],
)
def test_a_doubt_is_lifted_by_the_network_only(
    oracle: Oracle, tmp_path: Path, prober: Prober | None, released: bool
) -> None:
    """A podman of unknown storage at work: an address that is silent on its bridge may
    be released; one on a network that cannot be probed may not."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]), local=[Doubtful()])  # type: ignore[list-item]
    digest = sha(db)
    result = heal(ctx, {"leaked"}, prober)
    assert bool(result.released) is released  # type: ignore[attr-defined]
    if not released:
        ((_, why),) = result.refused  # type: ignore[attr-defined]
        assert "environment cannot be read" in why
        assert sha(db) == digest
