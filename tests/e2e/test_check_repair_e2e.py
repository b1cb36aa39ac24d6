"""``ipamguard check``, ``repair``, ``backups`` and ``restore`` against a real podman.

Every test runs a real rootful podman in its own sandbox (fixture ``sandbox``) with
podman's API service on the default socket, stages the seed incident in the real
/run/containers/networks/ipam.db, and runs ipamguard inside the sandbox on the
default paths. Every file ipamguard wrote ends with Go bbolt's consistency check.
``repair`` mostly runs with ``--grace 0``: both liveness observations (the first one
and the one under the locks right before the write) still have to agree. The test of
a starting container uses the defaults (and strace to stretch podman's start).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cli_helpers import RunRmLoop, as_json, ig, show
from oracle_tool import Oracle
from sandbox import IMAGE, IPAM_DB, Sandbox

pytestmark = pytest.mark.e2e

NET_A, SUBNET_A = "ipg-a", "172.19.10.0/24"
NET_B, SUBNET_B = "ipg-b", "172.19.20.0/24"
BACKUPS = "/var/tmp/ipg-backups"
DEFAULT_BACKUPS = "/var/lib/ipamguard/backups"


# --------------------------------------------------------------------------- helpers


def repair(sb: Sandbox, *args: str, rc: int | None = None) -> tuple[Any, str]:
    """``repair --yes --grace 0 --json ARGS`` -> (document, stderr)."""
    res = ig(sb, "repair", "--yes", "--grace", "0", "--json", *args, rc=rc)
    return as_json(res), res.stderr


def _records(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict below node that names an IP (released/refused entries, maybe nested)."""
    if isinstance(node, dict):
        if "ip" in node:
            yield node
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _records(value)
    elif isinstance(node, list):
        for item in node:
            yield from _records(item)


def released(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    """{(network, ip, container ID)} of a repair's "released" list."""
    out = set()
    for r in _records(doc["released"]):
        cid = r.get("container_id")
        assert r.get("network") and cid, f"released entry without network/container: {r}"
        out.add((r["network"], r["ip"], cid))
    return out


def sha(sb: Sandbox) -> str:
    return hashlib.sha256(sb.read_file(IPAM_DB)).hexdigest()


def ipam(oracle: Oracle, sb: Sandbox) -> dict[str, Any]:
    """The whole ipam.db as Go bbolt reads it, normalized for comparisons."""
    dump = oracle.ipam_dump(sb.host_path(IPAM_DB))
    return {
        "allocations": {
            (n["name"], s["subnet"], a["ip"]): a["container_id"]
            for n in dump["networks"]
            for s in n["subnets"]
            for a in s["allocations"]
        },
        "ids": {
            (n["name"], e["container_id"]): sorted(e["ips"])
            for n in dump["networks"]
            for e in n["ids"]
        },
        "last_ip": {
            (n["name"], s["subnet"]): s["last_ip"] for n in dump["networks"] for s in n["subnets"]
        },
    }


def without(state: dict[str, Any], cid: str) -> dict[str, Any]:
    """state minus every allocation and ids entry of container cid."""
    return {
        "allocations": {k: v for k, v in state["allocations"].items() if v != cid},
        "ids": {k: v for k, v in state["ids"].items() if k[1] != cid},
        "last_ip": state["last_ip"],
    }


def held_by(state: dict[str, Any], cid: str) -> set[tuple[str, str]]:
    return {(k[0], k[2]) for k, v in state["allocations"].items() if v == cid}


def container_ips(sb: Sandbox, name: str, **kw: Any) -> dict[str, str]:
    """{network: IP} of a container as podman sees it."""
    out = sb.podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", name, **kw)
    return {net: v["IPAddress"] for net, v in json.loads(out.stdout).items()}


def assert_holds(state: dict[str, Any], cid: str, ips: dict[str, str]) -> None:
    """cid holds exactly ips {network: ip}, with consistent ids entries."""
    assert held_by(state, cid) == set(ips.items()), cid
    for network, ip in ips.items():
        assert state["ids"][(network, cid)] == [ip], cid


def assert_oracle_clean(oracle: Oracle, sb: Sandbox, path: str = IPAM_DB) -> None:
    assert oracle.check(sb.host_path(path)) == []


def run(sb: Sandbox, name: str, *net_args: str, **kw: Any) -> str:
    return sb.podman(
        "run", "-d", "--name", name, *net_args, IMAGE, "sleep", "1000", **kw
    ).stdout.strip()


def two_networks(sb: Sandbox) -> None:
    sb.network_create(NET_A, SUBNET_A)
    sb.network_create(NET_B, SUBNET_B)


def backup_entries(doc: Any) -> list[dict[str, Any]]:
    entries = doc["backups"] if isinstance(doc, dict) else doc
    assert isinstance(entries, list), doc
    return entries


# --------------------------------------------------------------------------- 1. seed incident


def test_seed_incident_on_two_networks_check_then_repair(sandbox: Sandbox, oracle: Oracle) -> None:
    two_networks(sandbox)
    healthy_a = run(sandbox, "healthy-a", "--network", NET_A)
    healthy_b = run(sandbox, "healthy-b", "--network", f"{NET_B}:ip=172.19.20.5")
    leak = sandbox.stage_leak_multi("victim", {NET_A: "172.19.10.11", NET_B: "172.19.20.11"})
    sandbox.start_podman_service()
    before = ipam(oracle, sandbox)
    assert held_by(before, leak) == {(NET_A, "172.19.10.11"), (NET_B, "172.19.20.11")}

    digest = sha(sandbox)
    res = ig(sandbox, "check", "--json", rc=1)
    doc = as_json(res)
    findings = doc["findings"]
    assert sorted((f["kind"], f["network"], f["subnet"], f["ip"], f["container_id"])
                  for f in findings) == [
        ("leaked", NET_A, SUBNET_A, "172.19.10.11", leak),
        ("leaked", NET_B, SUBNET_B, "172.19.20.11", leak),
    ], show(res)  # fmt: skip
    for f in findings:
        assert f["releasable"] is True, f
        assert isinstance(f["evidence"], list) and f["evidence"], f
        assert isinstance(f["first_seen"], (int, float, str)), f
        assert "confirmed" in f, f
    assert doc["networks"] == 2
    assert doc["allocations"] == 4
    assert doc["liveness"]["complete"] is True, doc["liveness"]
    assert not doc["liveness"]["failures"]
    assert healthy_a not in res.stdout and healthy_b not in res.stdout
    # the text form names the container and both addresses
    text = ig(sandbox, "check", rc=1).stdout
    assert "172.19.10.11" in text and "172.19.20.11" in text and leak[:12] in text, text
    assert sha(sandbox) == digest  # check never writes

    # --dry-run: says what, writes nothing
    res = ig(sandbox, "repair", "--dry-run", "--grace", "0")
    assert res.returncode in (0, 1), show(res)
    assert "172.19.10.11" in res.stdout + res.stderr, show(res)
    assert sha(sandbox) == digest

    pre_repair = sandbox.read_file(IPAM_DB)
    doc, _ = repair(sandbox, rc=0)  # default backup dir
    assert released(doc) == {(NET_A, "172.19.10.11", leak), (NET_B, "172.19.20.11", leak)}
    assert not doc["refused"], doc
    backup = doc["backup"]  # a record of what was removed, and (first write) a full copy
    assert backup and backup.startswith(DEFAULT_BACKUPS + "/release.netavark."), doc
    st = sandbox.host_path(backup).stat()
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    record = json.loads(sandbox.read_file(backup))
    assert {(a["network"], a["ip"], a["container_id"]) for a in record["allocations"]} == {
        (NET_A, "172.19.10.11", leak),
        (NET_B, "172.19.20.11", leak),
    }
    assert record["location"] == IPAM_DB
    copy = record["full_copy"]
    assert sandbox.read_file(copy) == pre_repair  # the exact file the write started from
    assert sandbox.host_path(copy).stat().st_mode & 0o777 == 0o600
    assert_oracle_clean(oracle, sandbox, copy)

    after = ipam(oracle, sandbox)
    assert after == without(before, leak)  # only the leak went; healthy ones untouched
    assert_holds(after, healthy_a, container_ips(sandbox, "healthy-a"))
    assert_holds(after, healthy_b, {NET_B: "172.19.20.5"})
    assert_oracle_clean(oracle, sandbox)

    doc = as_json(ig(sandbox, "check", "--json", rc=0))
    assert doc["findings"] == []
    ig(sandbox, "check", rc=0)
    # nothing left to repair: exit 0, no write, no backup
    digest = sha(sandbox)
    doc, _ = repair(sandbox, rc=0)
    assert doc["released"] == [] and doc["backup"] is None, doc
    assert sha(sandbox) == digest

    # podman hands both addresses out again and keeps working
    again = run(sandbox, "again", "--network", f"{NET_A}:ip=172.19.10.11",
                "--network", f"{NET_B}:ip=172.19.20.11")  # fmt: skip
    assert container_ips(sandbox, "again") == {NET_A: "172.19.10.11", NET_B: "172.19.20.11"}
    final = ipam(oracle, sandbox)
    assert_holds(final, again, {NET_A: "172.19.10.11", NET_B: "172.19.20.11"})
    assert without(final, again)["allocations"] == after["allocations"]
    ig(sandbox, "check", rc=0)
    sandbox.podman("rm", "-f", "-t0", "again")
    assert ipam(oracle, sandbox)["allocations"] == after["allocations"]
    assert_oracle_clean(oracle, sandbox)


# --------------------------------------------------------------------------- 2. second root


def test_running_container_of_another_storage_root_is_never_released(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    sandbox.network_create(NET_A, SUBNET_A)
    other = sandbox.second_root("other")
    elsewhere = run(sandbox, "elsewhere", "--network", f"{NET_A}:ip=172.19.10.30", root=other)
    local = run(sandbox, "local", "--network", NET_A)
    leak = sandbox.stage_leak("victim", NET_A, "172.19.10.11")
    sandbox.start_podman_service()
    assert sandbox.podman("ps", "-a", "-q", "--no-trunc").stdout.split() == [local]

    doc = as_json(ig(sandbox, "check", "--json", rc=1))
    assert [(f["kind"], f["ip"], f["container_id"]) for f in doc["findings"]] == [
        ("leaked", "172.19.10.11", leak)
    ], doc["findings"]
    assert elsewhere not in json.dumps(doc)

    before = ipam(oracle, sandbox)
    doc, _ = repair(sandbox, rc=0)
    assert released(doc) == {(NET_A, "172.19.10.11", leak)}
    assert elsewhere not in json.dumps(doc)
    after = ipam(oracle, sandbox)
    assert after == without(before, leak)
    assert_holds(after, elsewhere, {NET_A: "172.19.10.30"})
    # every kind asked for: still nothing of it
    doc, _ = repair(sandbox, "--kind", "leaked,stale,dangling,orphan-network")
    assert elsewhere not in json.dumps(doc["released"])
    assert_holds(ipam(oracle, sandbox), elsewhere, {NET_A: "172.19.10.30"})
    res = sandbox.podman("run", "--network", f"{NET_A}:ip=172.19.10.30", IMAGE, "true",
                         check=False)  # fmt: skip
    assert f"already allocated to container ID {elsewhere}" in res.stderr
    assert_oracle_clean(oracle, sandbox)

    # removed properly by its own podman: nothing remains, nothing to report
    sandbox.podman("rm", "-f", "-t0", "elsewhere", root=other)
    final = ipam(oracle, sandbox)
    assert held_by(final, elsewhere) == set()
    assert not [k for k in final["ids"] if k[1] == elsewhere]
    ig(sandbox, "check", rc=0)
    assert_oracle_clean(oracle, sandbox)


@pytest.mark.parametrize("root", ["default", "other"])
def test_starting_container_is_not_released(sandbox: Sandbox, oracle: Oracle, root: str) -> None:
    """Between its network setup (address allocated, network lock released) and the
    start of its conmon, a starting container is invisible to runtime state and to
    conmon; a container of another storage root is invisible to podman's API too. A
    slow host makes that window long; strace delays conmon's execve by 3 s to hold it
    open. Neither ``check`` (as a confirmed, releasable leak) nor ``repair --yes`` with
    its default options may treat that live allocation as leaked."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    sandbox.network_create(NET_A, SUBNET_A)
    run(sandbox, "warm", "--network", NET_A)  # ipam.db exists
    other = sandbox.second_root("other") if root == "other" else None
    root_args = other.args if other else ()
    conmon = sandbox.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
    cid = sandbox.podman("create", "--name", "slow", "--network", f"{NET_A}:ip=172.19.10.77",
                         IMAGE, "sleep", "1000", root=other).stdout.strip()  # fmt: skip
    sandbox.start_podman_service()

    start = sandbox.popen(
        "strace", "-f", "-qq", "-o", "/dev/null", "--detach-on=execve", "-P", conmon,
        "-e", "trace=execve", "-e", "inject=execve:delay_enter=3000000",
        "podman", *root_args, "start", "slow",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while cid.encode() not in sandbox.read_file(IPAM_DB):
        assert start.poll() is None, start.communicate()
        assert time.monotonic() < deadline, "podman start never allocated the address"
        time.sleep(0.02)
    time.sleep(0.3)  # netavark's setup done, podman's network lock released
    assert not [p for p in sandbox.processes() if "conmon" in p and cid in p], "window missed"

    # every consequence is collected, so that one run shows the whole damage
    problems = []
    doc = as_json(ig(sandbox, "check", "--json"))
    mine = [f for f in doc["findings"] if f["container_id"] == cid]
    if [f for f in mine if f["releasable"] and f["confirmed"]]:
        problems.append(f"check: a confirmed, releasable finding for it: {mine}")
    res = ig(sandbox, "repair", "--yes", "--json")
    if cid in json.dumps(as_json(res)["released"]):
        problems.append(f"repair --yes released it:\n{show(res)}")

    _, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    assert container_ips(sandbox, "slow", root=other) == {NET_A: "172.19.10.77"}
    if held_by(ipam(oracle, sandbox), cid) != {(NET_A, "172.19.10.77")}:
        problems.append("its allocation is gone from ipam.db, yet it runs with 172.19.10.77")
    res = sandbox.podman("run", "-d", "--name", "twin", "--network",
                         f"{NET_A}:ip=172.19.10.77", IMAGE, "sleep", "1000",
                         check=False)  # fmt: skip
    if f"already allocated to container ID {cid}" not in res.stderr:
        problems.append(f"podman gave 172.19.10.77 to a second container (rc={res.returncode})")
    assert not problems, "\n".join(problems)
    sandbox.podman("rm", "-f", "-t0", "slow", root=other)
    assert held_by(ipam(oracle, sandbox), cid) == set()
    assert_oracle_clean(oracle, sandbox)


# --------------------------------------------------------------------------- stale


def test_stale_allocation_of_an_exited_container(sandbox: Sandbox, oracle: Oracle) -> None:
    """An exited container still holding its address (a failed teardown): reported as
    stale, left alone by the default kinds, released with --kind stale; podman can start
    the container again afterwards."""
    sandbox.network_create(NET_A, SUBNET_A)
    cid = run(sandbox, "sleeper", "--network", NET_A, "--ip", "172.19.10.60")
    held = sandbox.read_file(IPAM_DB)
    sandbox.podman("stop", "-t0", "sleeper")
    assert held_by(ipam(oracle, sandbox), cid) == set()  # podman released it at cleanup
    sandbox.write_file(IPAM_DB, held)  # ... as if that write had failed
    sandbox.start_podman_service()

    doc = as_json(ig(sandbox, "check", "--json", rc=1))
    assert [(f["kind"], f["ip"], f["container_id"]) for f in doc["findings"]] == [
        ("stale", "172.19.10.60", cid)
    ], doc
    digest = sha(sandbox)
    doc, _ = repair(sandbox, "--backup-dir", BACKUPS, rc=1)  # default kinds: not stale
    assert released(doc) == set() and doc["backup"] is None, doc
    assert sha(sandbox) == digest
    doc, _ = repair(sandbox, "--kind", "stale", "--backup-dir", BACKUPS, rc=0)
    assert released(doc) == {(NET_A, "172.19.10.60", cid)}
    assert held_by(ipam(oracle, sandbox), cid) == set()
    assert_oracle_clean(oracle, sandbox)

    sandbox.podman("start", "sleeper")
    assert container_ips(sandbox, "sleeper") == {NET_A: "172.19.10.60"}
    assert_holds(ipam(oracle, sandbox), cid, {NET_A: "172.19.10.60"})
    ig(sandbox, "check", rc=0)
    sandbox.podman("rm", "-f", "-t0", "sleeper")
    assert ipam(oracle, sandbox)["allocations"] == {}
    assert_oracle_clean(oracle, sandbox)


# --------------------------------------------------------------------------- 3. API down


def test_podman_unreachable_check_fails_and_repair_writes_nothing(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    """Without the API socket the CLI asks the podman command (and says so); a URL
    named explicitly is the only one asked: nobody listening there means blind."""
    sandbox.network_create(NET_A, SUBNET_A)
    run(sandbox, "healthy", "--network", NET_A)
    leak = sandbox.stage_leak("victim", NET_A, "172.19.10.11")
    sandbox.start_podman_service()
    ig(sandbox, "check", rc=1)  # it can see while the API answers
    sandbox.stop_podman_service()
    res = ig(sandbox, "check", rc=1)  # no socket: the podman command answers
    assert "asked the podman command" in res.stderr, show(res)
    doc = as_json(ig(sandbox, "check", "--json", rc=1))
    assert doc["liveness"]["complete"] is True and "podman command" in doc["liveness"]["podman"]
    digest = sha(sandbox)

    dead = ("--url", "unix:///run/podman/nobody.sock")
    for args in (dead, ("--json", *dead)):
        res = ig(sandbox, "check", *args, rc=2)
        assert "podman" in res.stderr.lower(), show(res)
    # --json still says what it saw, and that it was blind: nothing is releasable
    doc = as_json(ig(sandbox, "check", "--json", *dead, rc=2))
    assert doc["liveness"]["complete"] is False, doc
    assert any("podman" in f.lower() for f in doc["liveness"]["failures"]), doc
    assert [(f["kind"], f["ip"], f["container_id"]) for f in doc["findings"]] == [
        ("leaked", "172.19.10.11", leak)
    ], doc
    assert not any(f["releasable"] or f["confirmed"] for f in doc["findings"]), doc
    res = ig(sandbox, "repair", "--yes", "--grace", "0", *dead, rc=2)
    assert "podman" in res.stderr.lower(), show(res)
    ig(sandbox, "repair", "--yes", "--grace", "0", "--json", "--backup-dir", BACKUPS, *dead, rc=2)
    ig(sandbox, "repair", "--yes", "--grace", "0", "--kind", "leaked,stale,dangling", *dead, rc=2)
    assert sha(sandbox) == digest
    assert not sandbox.host_path(BACKUPS).exists() or not list(sandbox.host_path(BACKUPS).iterdir())
    assert_oracle_clean(oracle, sandbox)


# --------------------------------------------------------------------------- 5. concurrency


def inject_leak(oracle: Oracle, sb: Sandbox, network: str, subnet: str, ip: str, cid: str) -> None:
    """A leak as a crashed teardown leaves it: IP key + ids entry of a container that is
    gone, written by Go's bbolt (under bbolt's flock, like podman's own writes)."""
    net, ids = network.encode().hex(), b"ids".hex()
    oracle.apply(
        sb.host_path(IPAM_DB),
        [
            [
                {"op": "put", "bucket": [net, subnet.encode().hex()],
                 "key": ipaddress.ip_address(ip).packed.hex(), "value": cid.encode().hex()},
                {"op": "put", "bucket": [net, ids], "key": cid.encode().hex(),
                 "value": json.dumps([ip]).encode().hex()},
            ]
        ],
    )  # fmt: skip


def test_repairs_while_podman_starts_and_removes_containers(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    """~20 podman run/rm (static and dynamic IPs) while repairs run, each repair with a
    fresh leak to release (a real write every time): no podman command fails, only the
    leaks go, every live container keeps its allocation."""
    t0 = time.monotonic()
    sandbox.network_create(NET_A, SUBNET_A)
    run(sandbox, "steady-dyn", "--network", NET_A)
    run(sandbox, "steady-static", "--network", NET_A, "--ip", "172.19.10.50")
    leak = sandbox.stage_leak("victim", NET_A, "172.19.10.11")
    sandbox.start_podman_service()

    churn = RunRmLoop(sandbox, NET_A, 20, IMAGE)  # the fifth ones stay running to the end
    churn.start()
    repairs: list[tuple[bool, str, subprocess.CompletedProcess[str]]] = []
    try:
        while len(repairs) < 10 or not churn.done.is_set():
            n = len(repairs)
            fake = hashlib.sha256(f"ipamguard-e2e-fake-{n}".encode()).hexdigest()
            if n:  # the first repair has the staged leak to release
                inject_leak(oracle, sandbox, NET_A, SUBNET_A, f"172.19.10.{200 + n}", fake)
            during = not churn.done.is_set()
            res = sandbox.ipamguard(
                "repair", "--yes", "--grace", "0", "--json", "--backup-dir", BACKUPS,
                check=False, timeout=60,
            )  # fmt: skip
            repairs.append((during, fake, res))
            if len(repairs) >= 40:
                break
    finally:
        churn.join()

    failed = [show(r) for r in churn.results if r.returncode != 0 or "ipam" in r.stderr.lower()]
    assert not failed, "\n".join(failed)
    assert len(churn.results) == 20 + 16
    assert sum(during for during, _, _ in repairs) >= 5, "the repairs did not overlap the churn"

    released_all: set[tuple[str, str, str]] = set()
    for n, (_, fake, res) in enumerate(repairs):
        assert "Traceback" not in res.stderr, show(res)
        assert res.returncode in (0, 1), show(res)
        got = released(as_json(res))
        # each repair released exactly its own fresh leak, nothing else
        expected = {(NET_A, f"172.19.10.{200 + n}", fake)} if n else {(NET_A, "172.19.10.11", leak)}
        assert got == expected, show(res)
        released_all |= got

    final = ipam(oracle, sandbox)
    assert held_by(final, leak) == set()
    running = sandbox.podman("ps", "-q", "--no-trunc").stdout.split()
    assert len(running) == 2 + len(churn.kept)
    for name in ["steady-dyn", "steady-static", *churn.kept]:
        assert_holds(final, sandbox.container_id(name), container_ips(sandbox, name))
    # nothing but the running containers holds anything (podman's own teardowns worked)
    assert set(final["allocations"].values()) == set(running)
    assert {k[1] for k in final["ids"]} == set(running)
    ig(sandbox, "check", rc=0)
    assert_oracle_clean(oracle, sandbox)
    assert time.monotonic() - t0 < 60


# --------------------------------------------------------------------------- 6. backups/restore


def test_backups_and_restore(sandbox: Sandbox, oracle: Oracle) -> None:
    sandbox.network_create(NET_A, SUBNET_A)
    healthy = run(sandbox, "healthy", "--network", NET_A)
    leak = sandbox.stage_leak("victim", NET_A, "172.19.10.11")
    sandbox.start_podman_service()
    leaked_state = ipam(oracle, sandbox)
    leaked_bytes = sandbox.read_file(IPAM_DB)

    ig(sandbox, "backups", "--backup-dir", BACKUPS, rc=None)  # none yet: no error, no traceback
    doc, _ = repair(sandbox, "--backup-dir", BACKUPS, rc=0)
    first = doc["backup"]  # the record of this release
    assert first and first.startswith(BACKUPS + "/release.netavark."), doc
    assert sandbox.host_path(first).stat().st_mode & 0o777 == 0o600
    copy = json.loads(sandbox.read_file(first))["full_copy"]  # the first write after boot
    assert sandbox.read_file(copy) == leaked_bytes
    repaired = ipam(oracle, sandbox)
    assert repaired == without(leaked_state, leak)

    res = ig(sandbox, "backups", "--backup-dir", BACKUPS, "--json", rc=0)
    entries = backup_entries(as_json(res))
    assert sorted((e["kind"], e["path"]) for e in entries) == [("copy", copy), ("record", first)], (
        show(res)
    )
    res = ig(sandbox, "backups", "--backup-dir", BACKUPS, rc=0)
    assert first.rsplit("/", 1)[1] in res.stdout, show(res)

    # not a bbolt file: refused, unchanged
    digest = sha(sandbox)
    sandbox.run("sh", "-c", "echo garbage > /var/tmp/not-a-db")
    ig(sandbox, "restore", "/var/tmp/not-a-db", "--yes", rc=2)
    ig(sandbox, "restore", "/var/tmp/missing.bak", "--yes", rc=2)
    assert sha(sandbox) == digest

    # --dry-run shows what would change (the leak's address comes back), writes nothing
    res = ig(sandbox, "restore", first, "--dry-run")
    assert res.returncode in (0, 1), show(res)
    assert "172.19.10.11" in res.stdout + res.stderr, show(res)
    assert sha(sandbox) == digest
    # without --yes and without a terminal: refused
    ig(sandbox, "restore", first, rc=2)
    assert sha(sandbox) == digest

    # no conflict (the leaked container is gone, nothing holds .11): put back
    ig(sandbox, "restore", first, "--yes", "--backup-dir", BACKUPS, rc=0)
    assert ipam(oracle, sandbox) == leaked_state
    assert_oracle_clean(oracle, sandbox)
    # the full copy holds the same: nothing differs now
    ig(sandbox, "restore", copy, "--yes", "--backup-dir", BACKUPS, rc=1)
    assert_holds(ipam(oracle, sandbox), healthy, container_ips(sandbox, "healthy"))
    # podman keeps working with the restored file
    sandbox.podman("run", "--rm", "--network", NET_A, IMAGE, "true")

    # repair again, then a new container takes the released address
    # (with a grace period this time: two observations 1 s apart)
    res = ig(sandbox, "repair", "--yes", "--grace", "1", "--json", "--backup-dir", BACKUPS, rc=0)
    doc = as_json(res)
    assert released(doc) == {(NET_A, "172.19.10.11", leak)}, show(res)
    second = doc["backup"]
    assert second and second != first
    listed = [e["path"] for e in backup_entries(as_json(ig(sandbox, "backups", "--backup-dir",
                                                           BACKUPS, "--json", rc=0)))]  # fmt: skip
    assert set(listed) >= {first, second}, listed
    taker = run(sandbox, "taker", "--network", NET_A, "--ip", "172.19.10.11")
    digest = sha(sandbox)

    # restoring would give .11 back to the gone container while taker holds it: refused
    res = ig(sandbox, "restore", second, "--yes", "--backup-dir", BACKUPS, rc=2)
    assert "172.19.10.11" in res.stderr or taker[:12] in res.stderr, show(res)
    assert sha(sandbox) == digest
    res = ig(sandbox, "restore", second, "--dry-run", rc=0)  # shows the conflict
    assert "172.19.10.11" in res.stdout + res.stderr, show(res)
    assert "taken since" in res.stderr, show(res)
    assert sha(sandbox) == digest
    state = ipam(oracle, sandbox)
    assert_holds(state, taker, {NET_A: "172.19.10.11"})
    assert held_by(state, leak) == set()

    # podman is fine after all this
    sandbox.podman("rm", "-f", "-t0", "taker")
    sandbox.podman("run", "--rm", "--network", NET_A, "--ip", "172.19.10.11", IMAGE, "true")
    assert_oracle_clean(oracle, sandbox)


def test_restore_does_not_silently_drop_a_live_allocation(sandbox: Sandbox, oracle: Oracle) -> None:
    """A full copy older than a running container lacks its allocation: restoring it would
    free a live address (podman would hand it out twice): refused, unchanged. A release
    record puts back what the release removed, and leaves the newcomer alone."""
    sandbox.network_create(NET_A, SUBNET_A)
    sandbox.stage_leak("victim", NET_A, "172.19.10.11")
    sandbox.start_podman_service()
    doc, _ = repair(sandbox, "--backup-dir", BACKUPS, rc=0)
    record = doc["backup"]
    copy = json.loads(sandbox.read_file(record))["full_copy"]
    newcomer = run(sandbox, "newcomer", "--network", NET_A, "--ip", "172.19.10.40")
    digest = sha(sandbox)

    res = ig(sandbox, "restore", copy, "--yes", rc=2)
    assert "172.19.10.40" in res.stderr or newcomer[:12] in res.stderr, show(res)
    assert sha(sandbox) == digest
    assert_holds(ipam(oracle, sandbox), newcomer, {NET_A: "172.19.10.40"})

    ig(sandbox, "restore", record, "--yes", "--backup-dir", BACKUPS, rc=0)
    assert_holds(ipam(oracle, sandbox), newcomer, {NET_A: "172.19.10.40"})
    assert (NET_A, SUBNET_A, "172.19.10.11") in ipam(oracle, sandbox)["allocations"]
    assert_oracle_clean(oracle, sandbox)
