"""The ipam.db model and release, on files that Go's bbolt wrote as netavark does."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ops import create_bucket, put
from oracle_tool import Oracle, container_id

from ipamguard.bolt import DB
from ipamguard.context import Overrides, build_context
from ipamguard.errors import NotFound, UsageError
from ipamguard.ipam.model import read_ipam
from ipamguard.ipam.release import plan_release
from ipamguard.manual import release_container

pytestmark = pytest.mark.oracle
REPO = Path(__file__).resolve().parents[2]


def ipam_file(oracle: Oracle, tmp_path: Path, count: int = 50) -> Path:
    path = tmp_path / "ipam.db"
    oracle.ipam_gen(path, "podman1", "10.89.0.0/16", count, ids_per_tx=7)
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    if args[0] == "release":  # never the host's backup directory
        args = (*args, "--backup-dir", tempfile.mkdtemp(prefix="ipamguard-test-"))
    return subprocess.run(
        [sys.executable, "-m", "ipamguard", *args],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_matches_go_view(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 300)
    with DB.open(path) as db, db.view() as tx:
        state = read_ipam(tx)
    go = oracle.ipam_dump(path)
    (network,) = state.networks
    (go_network,) = go["networks"]
    assert network.name == go_network["name"] == "podman1"
    (subnet,) = network.subnets
    assert subnet.cidr == "10.89.0.0/16"
    go_subnet = go_network["subnets"][0]
    assert subnet.last_ip == go_subnet["last_ip"]
    assert [(a.ip, a.container_id) for a in subnet.allocations] == [
        (a["ip"], a["container_id"]) for a in go_subnet["allocations"]
    ]
    assert sorted((e.container_id, list(e.ips)) for e in network.ids) == sorted(
        (e["container_id"], e["ips"]) for e in go_network["ids"]
    )
    assert state.malformed == []


def test_malformed_entries_are_kept_not_dropped(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 3)
    net, sub, ids = [b"podman1"], [b"podman1", b"10.89.0.0/16"], [b"podman1", b"ids"]
    oracle.apply(path, [[
        put(sub, b"\x01\x02", b"x" * 64),                  # not an IP
        put(sub, bytes([10, 90, 0, 1]), b"y" * 64),        # outside the subnet
        put(ids, b"z" * 64, b"not json"),                  # bad ids entry
        create_bucket(net, b"not-a-subnet"),
        put(net, b"stray", b"value"),
    ]])  # fmt: skip
    with DB.open(path) as db, db.view() as tx:
        state = read_ipam(tx)
    reasons = sorted(m.reason for m in state.malformed)
    assert reasons == [
        "IP outside subnet 10.89.0.0/16",
        "bucket name is not a subnet",
        "ids entry is not a JSON IP list",
        "not a 4- or 16-byte IP",
        "value where a bucket belongs",
    ]
    assert len(state.allocations()) == 3


def test_plan_release_finds_keys_by_search_and_prefix(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 200)
    cid = container_id(17)
    with DB.open(path) as db, db.view() as tx:
        plan = plan_release(tx, cid[:10])
        state = read_ipam(tx)
    assert plan.container_id == cid
    expected = [a for a in state.allocations() if a.container_id == cid]
    assert list(plan.allocations) == expected and len(expected) == 1
    assert [e.container_id for e in plan.ids_entries] == [cid]
    with DB.open(path) as db, db.view() as tx:
        with pytest.raises(NotFound):
            plan_release(tx, "f" * 64)
        with pytest.raises(UsageError):
            plan_release(tx, "ab")


def test_release_container_removes_exactly_its_keys(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 500)
    before = oracle.dump(path)
    cid = container_id(123)
    ctx = build_context(False, Overrides(db=str(path), backup_dir=str(tmp_path / "backups")))
    (store,) = ctx.stores()
    result = release_container(
        ctx, store, cid, None, dry_run=False, force=True, confirm=None, prober=None
    )
    assert result.written and len(result.plan.allocations) == 1
    assert oracle.check(path) == []
    after = oracle.dump(path)
    net_before = before["buckets"][b"podman1".hex()]["buckets"]
    net_after = after["buckets"][b"podman1".hex()]["buckets"]
    ids_hex = b"ids".hex()
    assert cid.encode().hex() in net_before[ids_hex]["keys"]
    assert cid.encode().hex() not in net_after[ids_hex]["keys"]
    removed = {k for k in net_before[b"10.89.0.0/16".hex()]["keys"]} - set(
        net_after[b"10.89.0.0/16".hex()]["keys"]
    )
    assert len(removed) == 1
    # what Go's own dealloc removes is exactly the same
    go_copy = tmp_path / "go.db"
    go_copy.write_bytes(b"")
    go_copy.unlink()
    oracle.ipam_gen(go_copy, "podman1", "10.89.0.0/16", 500, ids_per_tx=7)
    oracle.ipam_release(go_copy, cid)
    assert oracle.dump(go_copy) == after


def test_cli_dump_json_and_text(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 20)
    done = cli("dump", "--db", str(path), "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["networks"][0]["subnets"][0]["allocations"][0]["ip"] == "10.89.0.2"
    text = cli("dump", "--db", str(path))
    assert text.returncode == 0 and "network podman1" in text.stdout and "10.89.0.2" in text.stdout


@pytest.mark.parametrize("content", [None, b"", b"\0" * 8192, b"not a database at all" * 400])
def test_cli_bad_files_one_line_exit_2(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ipam.db"
    if content is not None:
        path.write_bytes(content)
    for args in (["dump"], ["release", "--container", "abcdef", "--force", "--yes"]):
        done = cli(*args, "--db", str(path))
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ipamguard: error: "), done.stderr
        assert "Traceback" not in done.stderr
    if content is not None:
        assert path.read_bytes() == content


def test_cli_release_rules(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 30)
    cid = container_id(5)
    digest = sha(path)
    podman_down = ("--url", "unix:///nonexistent/podman.sock")  # and no podman command
    no_force = cli("release", "--container", cid, "--db", str(path), "--yes", *podman_down)
    assert no_force.returncode == 2 and "--force" in no_force.stderr
    no_tty = cli("release", "--container", cid, "--db", str(path), "--force")
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr
    dry = cli("release", "--container", cid[:8], "--db", str(path), "--force", "--dry-run")
    assert dry.returncode == 0 and "would release 10.89.0.7" in dry.stdout
    assert sha(path) == digest
    done = cli("release", "--container", cid[:8], "--db", str(path), "--force", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["written"] and [a["ip"] for a in report["allocations"]] == ["10.89.0.7"]
    assert oracle.check(path) == []
    again = cli("release", "--container", cid, "--db", str(path), "--force", "--yes")
    assert again.returncode == 1 and "no allocation" in again.stderr
    unknown_net = cli(
        "release", "--container", container_id(6), "--network", "nope",
        "--db", str(path), "--force", "--yes",
    )  # fmt: skip
    assert unknown_net.returncode == 1


def test_release_waits_for_gos_lock_then_times_out(oracle: Oracle, tmp_path: Path) -> None:
    path = ipam_file(oracle, tmp_path, 10)
    digest = sha(path)
    with oracle.hold(path):
        done = cli(
            "release", "--container", container_id(3), "--db", str(path),
            "--force", "--yes", "--lock-timeout", "0.3",
        )  # fmt: skip
    assert done.returncode == 2
    assert "is locked by pid" in done.stderr and "gave up after 0.3 s" in done.stderr
    assert sha(path) == digest
