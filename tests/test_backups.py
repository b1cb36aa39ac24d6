"""Backups that fit: a record of what a release removed, full copies at most once per
interval (and after boot), offline files' backups beside them, restore of either.

The files are written by Go's bbolt; every file the project writes ends with Go's check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from oracle_tool import Oracle, container_id
from test_healing import NET, SUBNET, Prober, Scripted, context, heal, ip_of, running, sha

from ipamguard import backups
from ipamguard.context import Overrides, build_context, offline_backup_dir
from ipamguard.errors import Changed, IpamguardError, Refused
from ipamguard.restore import restore

pytestmark = pytest.mark.oracle


def allocations(oracle: Oracle, db: Path) -> dict[str, str]:
    dump = oracle.ipam_dump(db)
    return {a["ip"]: a["container_id"] for n in dump["networks"] for s in n["subnets"]
            for a in s["allocations"]}  # fmt: skip


def test_a_release_writes_a_record_of_what_it_removed(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 200)
    before = db.read_bytes()
    ctx = context(tmp_path, db, Scripted([[running(i) for i in range(200) if i != 7]]))
    result = heal(ctx, {"leaked"}, Prober())
    record_path = result.backup  # type: ignore[attr-defined]
    assert backups.is_record(record_path) and os.stat(record_path).st_mode & 0o777 == 0o600
    record = backups.read_record(record_path)
    assert record["store"] == "netavark" and record["location"] == str(db)
    assert record["before"]["sha256"] == __import__("hashlib").sha256(before).hexdigest()
    assert record["allocations"] == [
        {"network": NET, "subnet": SUBNET, "ip": ip_of(7), "container_id": container_id(7)}
    ]
    assert len(record["removed"]) == 2  # the IP key and the ids entry
    assert os.path.getsize(record_path) < 2000  # not the whole file
    # the first write (after boot) took one full copy too, the next ones do not
    copies = [b for b in backups.list_backups(ctx.paths.backup_dir) if b.kind == "copy"]
    assert len(copies) == 1 and record["full_copy"] == copies[0].path
    assert backups.copy_location(copies[0].path) == str(db)
    assert Path(copies[0].path).read_bytes() == before
    ctx2 = context(tmp_path, db, Scripted([[running(i) for i in range(200) if i not in (7, 9)]]))
    heal(ctx2, {"leaked"}, Prober())
    kinds = [b.kind for b in backups.list_backups(ctx.paths.backup_dir)]
    assert sorted(kinds) == ["copy", "record", "record"]
    assert oracle.check(db) == []


def test_a_full_copy_is_due_after_the_interval_or_a_boot(tmp_path: Path) -> None:
    where = str(tmp_path / "b")
    assert backups.full_copy_due(where, "/x/ipam.db", 3600)
    path = backups.write_backup(b"data", 5, where, 3, location="/x/ipam.db")
    assert not backups.full_copy_due(where, "/x/ipam.db", 3600)
    assert backups.full_copy_due(where, "/other/ipam.db", 3600)  # a copy of another file
    old = backups.boot_time() - 10  # taken before this boot
    os.utime(path, (old, old))
    assert backups.full_copy_due(where, "/x/ipam.db", 10**9)


def test_restore_a_record_puts_back_exactly_what_was_removed(
    oracle: Oracle, tmp_path: Path
) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 4)
    original = allocations(oracle, db)
    ctx = context(tmp_path, db, Scripted([[running(0), running(1)]]))
    result = heal(ctx, {"leaked"}, Prober())
    assert len(result.released) == 2  # type: ignore[attr-defined]
    record = result.backup  # type: ignore[attr-defined]
    store = ctx.stores()[0]
    plan = restore(ctx, store, record, force=False, dry_run=False, confirm=None, prober=None)
    assert plan.kind == "record" and plan.written
    assert {a.ip for a in plan.added} == {ip_of(2), ip_of(3)}
    assert allocations(oracle, db) == original
    assert oracle.check(db) == []
    full = oracle.ipam_dump(db)["networks"][0]
    assert sorted(e["container_id"] for e in full["ids"]) == sorted(
        container_id(i) for i in range(4)
    )


def test_a_record_already_in_place_writes_nothing(oracle: Oracle, tmp_path: Path) -> None:
    """Restoring a record twice: the second finds every key as it was and writes
    nothing (no commit, no safety backup), instead of an empty write."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 4)
    ctx = context(tmp_path, db, Scripted([[running(0), running(1)]]))
    record = heal(ctx, {"leaked"}, Prober()).backup  # type: ignore[attr-defined]
    store = ctx.stores()[0]
    first = restore(ctx, store, record, force=False, dry_run=False, confirm=None, prober=None)
    assert first.written and first.added
    digest, kept = sha(db), backups.list_backups(ctx.paths.backup_dir)
    again = restore(ctx, store, record, force=False, dry_run=False, confirm=None, prober=None)
    assert not again.written and again.added == [] and again.safety_backup is None
    assert any("in place already" in note for note in again.notes), again.notes
    assert sha(db) == digest
    assert backups.list_backups(ctx.paths.backup_dir) == kept
    assert oracle.check(db) == []


def test_restore_of_a_record_refuses_addresses_taken_since(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 3)
    ctx = context(tmp_path, db, Scripted([[running(0), running(1)]]))
    record = heal(ctx, {"leaked"}, Prober()).backup  # type: ignore[attr-defined]
    # podman gives 10.89.0.4 to another container meanwhile
    from ops import put

    from ipamguard.ipam.model import ip_to_key

    newcomer = container_id(99).encode()
    oracle.apply(db, [[put([NET.encode(), SUBNET.encode()], ip_to_key(ip_of(2)), newcomer)]])
    digest = sha(db)
    store = ctx.stores()[0]
    with pytest.raises(Refused, match="taken since the release"):
        restore(ctx, store, record, force=False, dry_run=False, confirm=None, prober=None)
    assert sha(db) == digest
    forced = restore(ctx, store, record, force=True, dry_run=False, confirm=None, prober=None)
    assert forced.written and allocations(oracle, db)[ip_of(2)] == container_id(2)
    assert oracle.check(db) == []


def test_a_backup_of_another_file_is_refused_unless_told(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 3)
    other = tmp_path / "other" / "ipam.db"
    other.parent.mkdir()
    oracle.ipam_gen(other, NET, SUBNET, 2)  # without what the record holds: a write follows
    ctx = context(tmp_path, db, Scripted([[running(0), running(1)]]))
    record = heal(ctx, {"leaked"}, Prober()).backup  # type: ignore[attr-defined]
    copy = json.loads(Path(record).read_text())["full_copy"]
    other_ctx = context(tmp_path, other, Scripted([[running(0), running(1)]]))
    store = other_ctx.stores()[0]
    digest = sha(other)
    for backup in (record, copy):
        with pytest.raises(Refused, match=r"is a backup of .*--other-file"):
            restore(other_ctx, store, backup, force=True, dry_run=False, confirm=None,
                    prober=None)  # fmt: skip
    assert sha(other) == digest
    done = restore(other_ctx, store, record, force=False, dry_run=False, confirm=None,
                   prober=None, other_file=True)  # fmt: skip
    assert done.written and oracle.check(other) == []


def test_an_offline_copy_keeps_its_backups_beside_it(tmp_path: Path) -> None:
    copy = tmp_path / "rescue" / "ipam.db"
    ctx = build_context(False, Overrides(db=str(copy)))
    assert ctx.paths.backup_dir == offline_backup_dir(str(copy))
    assert ctx.paths.backup_dir.startswith(str(tmp_path / "rescue"))
    assert not ctx.create_locks  # podman's lock files are never created for a copy
    assert not ctx.networks_known  # nor are its networks judged against this host's
    explicit = build_context(False, Overrides(db=str(copy), backup_dir="/srv/b"))
    assert explicit.paths.backup_dir == "/srv/b"


@pytest.mark.parametrize("problem", ["symlink", "group-writable", "not-a-directory"])
def test_a_backup_directory_others_could_tamper_with_is_refused(
    oracle: Oracle, tmp_path: Path, problem: str
) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    where = Path(ctx.paths.backup_dir)
    if problem == "symlink":
        (tmp_path / "elsewhere").mkdir()
        where.symlink_to(tmp_path / "elsewhere")
    elif problem == "group-writable":
        where.mkdir(mode=0o700)
        where.chmod(0o770)
    else:
        where.write_text("")
    digest = sha(db)
    with pytest.raises(IpamguardError, match="backup directory"):
        heal(ctx, {"leaked"}, Prober())
    assert sha(db) == digest


def test_nothing_is_written_when_the_file_changed_meanwhile(oracle: Oracle, tmp_path: Path) -> None:
    """restore of a record goes through the fence like every write."""
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, NET, SUBNET, 2)
    ctx = context(tmp_path, db, Scripted([[running(0)]]))
    record = heal(ctx, {"leaked"}, Prober()).backup  # type: ignore[attr-defined]
    store = ctx.stores()[0]
    calls = []

    def meanwhile(plan: object) -> None:  # the operator's prompt: podman writes meanwhile
        calls.append(plan)
        oracle.ipam_gen(db, "other", "10.90.0.0/24", 1)

    digest_after = None
    with pytest.raises(Changed):
        restore(ctx, store, record, force=False, dry_run=False, confirm=meanwhile, prober=None)
    digest_after = sha(db)
    assert calls and digest_after == sha(db)
    assert ip_of(1) not in allocations(oracle, db)
