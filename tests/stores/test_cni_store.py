"""CniStore's writes: only the planned files go, under the host-local flock, never
over a change; its release records put back exactly what went (restore)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cni_tree import Tree, cid, make_tree

from ipamguard.backups import BackupError, read_record
from ipamguard.context import Context
from ipamguard.errors import Changed, LockTimeout, NotFound, Refused, UsageError
from ipamguard.fenced import Action, Decision, write_fenced
from ipamguard.ipam.model import Allocation
from ipamguard.ipam.paths import PodmanPaths
from ipamguard.ipam.release import ReleasePlan
from ipamguard.liveness import LivenessSnapshot
from ipamguard.restore import restore_record
from ipamguard.stores.base import WriteTx
from ipamguard.stores.cni import CniStore, CniWriteTx

NET, SUBNET = "net1", "172.19.10.0/24"
LEAK = "172.19.10.11"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    tree = make_tree(tmp_path)
    tree.network(NET, SUBNET)
    tree.allocate(NET, LEAK, cid(1))
    tree.allocate(NET, "172.19.10.12", cid(2))
    tree.network("net2", "172.19.20.0/24")
    tree.allocate("net2", "172.19.20.5", cid(1), old=True)
    return tree


def plan_of(container: str, *allocations: Allocation) -> ReleasePlan:
    return ReleasePlan(container, allocations, ())


def leak_plan() -> ReleasePlan:
    return plan_of(cid(1), Allocation(NET, SUBNET, LEAK, cid(1)))


def release(store: CniStore, plan: ReleasePlan, backup: bool = False) -> tuple[object, object]:
    def work(wtx: CniWriteTx) -> str | None:
        wtx.release(plan)
        return wtx.backup() if backup else None

    return store.write(work)


def test_only_the_planned_files_are_removed(tree: Tree) -> None:
    before = tree.snapshot()
    store = tree.store()
    _, info = release(store, leak_plan())
    after = tree.snapshot()
    assert set(before) - set(after) == {f"{NET}/{LEAK}"}
    assert {k: v for k, v in before.items() if k != f"{NET}/{LEAK}"} == after  # byte for byte
    assert info.written and 0 < info.lock_hold < 0.05
    assert info.fence == store.read().fence  # the fence after the write is the store's


def test_the_file_is_removed_under_host_locals_flock(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tree.data / NET / "lock"
    seen: list[int] = []
    real_unlink = os.unlink

    def checking_unlink(name: str, *, dir_fd: int | None = None) -> None:
        probe = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            seen.append(error.errno)
        finally:
            os.close(probe)
        real_unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr("ipamguard.stores.cni.os.unlink", checking_unlink)
    release(tree.store(), leak_plan())
    assert seen == [errno.EWOULDBLOCK]  # held by the write, exclusively
    probe = os.open(lock, os.O_RDONLY)  # and released after it
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(probe)


def test_a_held_flock_times_out_and_nothing_is_written(tree: Tree) -> None:
    before = tree.snapshot()
    holder = os.open(tree.data / NET / "lock", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        store = tree.store()
        store.lock_timeout = 0.2
        with pytest.raises(LockTimeout, match=f"{NET}/lock is locked"):
            store.read()  # even the read waits for host-local (a shared flock)
    finally:
        os.close(holder)
    assert tree.snapshot() == before


def test_the_flock_is_created_as_host_local_does(tree: Tree) -> None:
    (tree.data / NET / "lock").unlink()
    release(tree.store(), leak_plan())
    assert (tree.data / NET / "lock").is_file()
    assert not (tree.data / NET / LEAK).exists()


@pytest.mark.parametrize("change", ["same_file_other_id", "other_file", "aba", "new_file"])
def test_a_change_between_the_read_and_the_commit_writes_nothing(tree: Tree, change: str) -> None:
    path = tree.data / NET / LEAK

    def work(wtx: CniWriteTx) -> None:
        wtx.release(leak_plan())
        if change == "same_file_other_id":
            path.write_text(f"{cid(7)}\r\neth0")
        elif change == "other_file":
            (tree.data / NET / "last_reserved_ip.0").write_text("172.19.10.99")
        elif change == "aba":
            content = path.read_bytes()
            path.unlink()
            path.write_bytes(content)
        else:
            tree.allocate(NET, "172.19.10.40", cid(8))

    with pytest.raises(Changed, match=f"{NET} changed since it was read; nothing was written"):
        tree.store().write(work)
    assert path.exists()


def test_a_change_in_another_network_does_not_void_the_write(tree: Tree) -> None:
    def work(wtx: CniWriteTx) -> None:
        wtx.release(leak_plan())
        tree.allocate("net2", "172.19.20.6", cid(9))

    _, info = tree.store().write(work)
    assert info.written and not (tree.data / NET / LEAK).exists()


def test_a_plan_for_another_id_is_a_bug(tree: Tree) -> None:
    wrong = plan_of(cid(2), Allocation(NET, SUBNET, LEAK, cid(2)))
    with pytest.raises(AssertionError, match="moved under the plan"):
        release(tree.store(), wrong)
    assert (tree.data / NET / LEAK).exists()


def test_rollback_writes_nothing(tree: Tree) -> None:
    before = tree.snapshot()

    def work(wtx: CniWriteTx) -> None:
        wtx.release(leak_plan())
        wtx.rollback()

    _, info = tree.store().write(work)
    assert not info.written and tree.snapshot() == before


def test_delete_network_removes_its_address_files_only(tree: Tree) -> None:
    (tree.config / f"{NET}.conflist").unlink()  # `podman network rm`
    state = tree.store().read().state
    assert state.network(NET) is not None and state.network(NET).orphaned  # type: ignore[union-attr]
    tree.store().write(lambda wtx: wtx.delete_network(NET))
    assert sorted(p.name for p in (tree.data / NET).iterdir()) == ["last_reserved_ip.0", "lock"]
    assert (tree.data / "net2" / "172.19.20.5").exists()
    assert tree.store().read().state.network(NET).orphaned is False  # type: ignore[union-attr]


def test_find_by_id_or_unique_prefix(tree: Tree) -> None:
    store = tree.store()
    plan, fence = store.find(cid(1)[:8])
    assert plan.container_id == cid(1) and fence == store.read().fence
    assert sorted(a.ip for a in plan.allocations) == ["172.19.10.11", "172.19.20.5"]
    plan, _ = store.find(cid(1), "net2")
    assert [a.ip for a in plan.allocations] == ["172.19.20.5"]
    tree.allocate(NET, "172.19.10.13", "0101" + "f" * 60)
    with pytest.raises(UsageError, match="ambiguous"):
        store.find("0101")
    with pytest.raises(UsageError, match="too short"):
        store.find("01")
    with pytest.raises(NotFound, match="no allocation of container abcdef"):
        store.find("abcdef")
    with pytest.raises(NotFound, match="network 'nope' has no directory"):
        store.find(cid(1), "nope")


# --------------------------------------------------------------------------- fenced path


@dataclass(frozen=True)
class Answer:
    status: str
    reason: str


@dataclass
class FakeProber:
    asked: list[dict[str, list[str]]] = field(default_factory=list)

    def __call__(self, wanted: Mapping[str, Sequence[str]]) -> Mapping[str, Mapping[str, Answer]]:
        self.asked.append({n: list(ips) for n, ips in wanted.items()})
        return {n: {ip: Answer("silent", "no answer") for ip in ips} for n, ips in wanted.items()}


def context(tree: Tree) -> Context:
    paths = PodmanPaths(
        db=str(tree.data.parent / "ipam.db"),
        network_dir=str(tree.data.parent / "networks"),
        network_locks=(str(tree.data.parent / "netavark.lock"),),
        socket_url="unix:///nonexistent",
        runtime_dirs=(),
        backup_dir=str(tree.backups),
        uid=os.getuid(),
    )
    return Context(paths, lock_timeout=0.5, backups_keep=5, api=(), local=())


def fenced_release(tree: Tree, store: CniStore, plan: ReleasePlan, prober: object = None) -> str:
    ctx = context(tree)

    def decide(wtx: WriteTx, local: LivenessSnapshot) -> Decision[ReleasePlan]:
        addresses = [(a.network, a.ip) for a in plan.allocations]
        return Decision([Action([plan], addresses, lambda tx: tx.release(plan))])

    result = write_fenced(ctx, store, store.read().fence, decide, prober)  # type: ignore[arg-type]
    assert result.written and result.backup is not None
    assert result.locks == list(store.network_locks or ())
    return result.backup


def test_the_fenced_path_takes_the_stores_locks_and_prober(tree: Tree) -> None:
    own, caller = FakeProber(), FakeProber()
    store = tree.store(own)  # type: ignore[arg-type]
    fenced_release(tree, store, leak_plan(), caller)
    assert (tree.config / "cni.lock").is_file()  # podman 4.3's CNI lock, created
    assert not (tree.data.parent / "netavark.lock").exists()  # not netavark's
    assert own.asked == [{NET: [LEAK]}] and caller.asked == []


def test_a_release_record_restores_exactly_what_went(tree: Tree) -> None:
    before = tree.snapshot()
    mode = os.stat(tree.data / NET / LEAK).st_mode & 0o777
    store = tree.store()
    second = Allocation("net2", "172.19.20.0/24", "172.19.20.5", cid(1))
    plan = plan_of(cid(1), Allocation(NET, SUBNET, LEAK, cid(1)), second)
    record_path = fenced_release(tree, store, plan)
    record = read_record(record_path)
    assert record["store"] == "cni" and record["location"] == str(tree.data)
    assert sorted((e["network"], e["name"]) for e in record["removed"]) == [
        (NET, LEAK), ("net2", "172.19.20.5")
    ]  # fmt: skip
    assert {a["ip"]: a["container_id"] for a in record["allocations"]} == {
        LEAK: cid(1), "172.19.20.5": cid(1)
    }  # fmt: skip
    assert os.stat(record_path).st_mode & 0o777 == 0o600
    done = restore_record(store, record_path, force=False, dry_run=False, confirm=None,
                          other_file=False, ctx=context(tree))  # fmt: skip
    assert done.written and done.conflicts == []
    assert tree.snapshot() == before  # byte for byte
    assert os.stat(tree.data / NET / LEAK).st_mode & 0o777 == mode


def test_a_record_already_in_place_writes_nothing(tree: Tree) -> None:
    store = tree.store()
    record_path = fenced_release(tree, store, leak_plan())
    kw = {"force": False, "dry_run": False, "confirm": None, "other_file": False}
    first = restore_record(store, record_path, ctx=context(tree), **kw)  # type: ignore[arg-type]
    assert first.written
    before = tree.snapshot()
    again = restore_record(store, record_path, ctx=context(tree), **kw)  # type: ignore[arg-type]
    assert not again.written and again.added == [] and again.safety_backup is None
    assert any("in place already" in note for note in again.notes), again.notes
    assert tree.snapshot() == before


def test_restore_refuses_an_address_taken_since_unless_forced(tree: Tree) -> None:
    store = tree.store()
    record_path = fenced_release(tree, store, leak_plan())
    tree.allocate(NET, LEAK, cid(5))  # a new container got the address since
    kw = {"dry_run": False, "confirm": None, "other_file": False, "ctx": context(tree)}
    with pytest.raises(Refused, match=f"{NET}/{LEAK} is held by {cid(5)} now"):
        restore_record(store, record_path, force=False, **kw)  # type: ignore[arg-type]
    assert (tree.data / NET / LEAK).read_bytes() == f"{cid(5)}\r\neth0".encode()
    forced = restore_record(store, record_path, force=True, **kw)  # type: ignore[arg-type]
    assert forced.written and (tree.data / NET / LEAK).read_bytes() == f"{cid(1)}\r\neth0".encode()
    saved = read_record(str(forced.safety_backup))  # the holder's file was recorded first
    holder = f"{cid(5)}\r\neth0".encode()
    assert [bytes.fromhex(e["content"]) for e in saved["removed"]] == [holder]


def test_restore_puts_back_a_removed_network_directory(tree: Tree) -> None:
    store = tree.store()
    record_path = fenced_release(tree, store, leak_plan())
    for path in (tree.data / NET).iterdir():
        path.unlink()
    (tree.data / NET).rmdir()
    restore_record(store, record_path, force=False, dry_run=False, confirm=None,
                   other_file=False, ctx=context(tree))  # fmt: skip
    assert (tree.data / NET / LEAK).read_bytes() == f"{cid(1)}\r\neth0".encode()


@pytest.mark.parametrize(
    "entry",
    [
        {"network": "../etc", "name": LEAK, "content": b"x".hex(), "mode": 0o644},
        {"network": NET, "name": "lock", "content": cid(1).encode().hex(), "mode": 0o644},
        {"network": NET, "name": LEAK, "content": "zz", "mode": 0o644},
        {"network": NET, "name": LEAK, "content": b"".hex(), "mode": 0o644},
        {"network": NET, "name": LEAK, "content": cid(1).encode().hex(), "mode": 0o4755},
        {"network": NET, "name": LEAK},
    ],
)
def test_a_record_that_is_not_cnis_writes_nothing(tree: Tree, entry: dict[str, object]) -> None:
    store = tree.store()
    record_path = fenced_release(tree, store, leak_plan())
    record = json.loads(Path(record_path).read_text())
    record["removed"] = [entry]
    Path(record_path).write_text(json.dumps(record))
    before = tree.snapshot()
    with pytest.raises(BackupError, match="not a CNI"):
        restore_record(store, record_path, force=True, dry_run=False, confirm=None,
                       other_file=False, ctx=context(tree))  # fmt: skip
    assert tree.snapshot() == before


def test_the_read_waits_for_nothing_but_host_local(tree: Tree) -> None:
    """A concurrent host-local (another thread holding the flock for 50 ms) delays the
    read by that long, no more."""
    holder = os.open(tree.data / NET / "lock", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    timer = threading.Timer(0.05, lambda: os.close(holder))
    timer.start()
    try:
        assert len(tree.store().read().state.allocations()) == 3
    finally:
        timer.join()
