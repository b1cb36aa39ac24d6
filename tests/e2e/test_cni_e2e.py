"""CNI's host-local files as the store, against a real podman using the CNI backend.

Each test runs rootful podman with ``network_backend = "cni"`` in its own sandbox
(tests/e2e/sandbox.py: /etc/cni and /var/lib/cni are private to it) and stages the
best-known IPAM error of that backend exactly: ``podman run --ip``, copy the address
file in /var/lib/cni/networks/NET aside, ``podman rm -f``, copy it back; the next
``podman run --ip`` of that address fails with "failed to allocate for range 0:
requested IP address ... is not available in range set". ``check``, ``repair`` and
the daemon heal it. Every test ends with the files exactly as podman expects them
(one address file per address of a container that holds it, nothing else) and the
address reusable.

podman 5.4 (the Debian 13 root) is built without CNI ("cni support is not enabled in
this build, only netavark"): its parametrizations are skipped with that reason,
checked against the real podman each time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cli_helpers import RunRmLoop, as_json, ig, show
from sandbox import (
    CONTAINERS_CONF,
    FLAVOURS,
    IMAGE,
    TRIXIE_FLAVOUR,
    Sandbox,
    StorageRoot,
    require_sandbox,
)

from ipamguard import messages

pytestmark = pytest.mark.e2e

CNI_CONF = CONTAINERS_CONF.replace('network_backend = "netavark"', 'network_backend = "cni"')
assert CNI_CONF != CONTAINERS_CONF
DATA_DIR = "/var/lib/cni/networks"
CONFIG_DIR = "/etc/cni/net.d"
NET, SUBNET = "ipg-c", "172.19.10.0/24"
LEAK = "172.19.10.11"
BACKUPS = "/var/tmp/ipg-backups"
NOT_AVAILABLE = "requested IP address {ip} is not available in range set"
HOST_LOCAL = "/usr/lib/cni/host-local"  # Debian 12's containernetworking-plugins


@pytest.fixture(params=FLAVOURS, ids=[f"podman{f}" for f in FLAVOURS])
def cni(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox whose podman uses the CNI backend, with network NET."""
    flavour = request.param
    require_sandbox(flavour)
    if flavour != TRIXIE_FLAVOUR and not os.path.exists(HOST_LOCAL):
        reason = f"{HOST_LOCAL} is missing (apt-get install containernetworking-plugins)"
        if os.environ.get("CI"):
            pytest.fail(f"e2e tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    with Sandbox(podman=flavour, containers_conf=CNI_CONF, image=False) as sb:
        info = sb.podman("info", "--format", "{{.Host.NetworkBackend}}", check=False)
        if flavour == TRIXIE_FLAVOUR and "cni support is not enabled" in info.stderr:
            pytest.skip(f"podman {flavour} of Debian 13 has no CNI: {info.stderr.strip()}")
        assert info.stdout.strip() == "cni", show(info)
        for private in ("/etc/cni", DATA_DIR.rsplit("/", 1)[0]):  # never the host's
            assert sb.run("findmnt", "-n", "-o", "FSTYPE", private).stdout.strip() == "tmpfs"
        sb.podman("import", "--quiet", str(_bb_tar()), IMAGE)
        sb.network_create(NET, SUBNET)
        yield sb


def _bb_tar() -> Any:
    from sandbox import busybox_image_tar

    return busybox_image_tar()


# --------------------------------------------------------------------------- helpers


def files(sb: Sandbox) -> dict[tuple[str, str], bytes]:
    """Every file of every network directory (lock and last_reserved_ip.N too)."""
    root = sb.host_path(DATA_DIR)
    found = {}
    for directory in sorted(root.iterdir()) if root.exists() else ():
        for path in sorted(directory.iterdir()):
            found[(directory.name, path.name)] = path.read_bytes()
    return found


def held(sb: Sandbox) -> dict[tuple[str, str], str]:
    """{(network, ip): container ID} as host-local reads its files."""
    return {
        key: content.decode().strip().split("\r\n")[0]
        for key, content in files(sb).items()
        if key[1] != "lock" and not key[1].startswith("last_reserved_ip.")
    }


def expected(sb: Sandbox, roots: tuple[StorageRoot, ...] = ()) -> dict[tuple[str, str], str]:
    """{(network, ip): ID} of every container that holds an address, as podman says."""
    found = {}
    for root in (None, *roots):
        ids = sb.podman("ps", "-aq", "--no-trunc", root=root).stdout.split()
        for cid in ids:
            doc = json.loads(sb.podman("inspect", cid, root=root).stdout)[0]
            for name, net in (doc["NetworkSettings"].get("Networks") or {}).items():
                for ip in (net.get("IPAddress"), net.get("GlobalIPv6Address")):
                    if ip:
                        found[(name, ip)] = cid
    return found


def stage_leak(sb: Sandbox, name: str, ip: str, network: str = NET) -> str:
    """The seed incident: ``run --ip``, copy the address file aside, ``rm -f``, copy it
    back. Returns the (gone) container's ID."""
    cid = sb.podman("run", "-d", "--name", name, "--network", network, "--ip", ip,
                    IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    path = sb.host_path(f"{DATA_DIR}/{network}/{ip}")
    saved, mode = path.read_bytes(), path.stat().st_mode & 0o777
    sb.podman("rm", "-f", "-t0", name)
    sb.wait_processes_gone(cid)
    assert not path.exists()
    path.write_bytes(saved)
    path.chmod(mode)
    return cid


def inject_leak(sb: Sandbox, ip: str, cid: str, network: str = NET) -> None:
    """A leak as a crashed teardown leaves it, written as host-local writes (its flock,
    O_EXCL, ``ID\\r\\nIFNAME``)."""
    directory = sb.host_path(f"{DATA_DIR}/{network}")
    lock = os.open(directory / "lock", os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(directory / ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, f"{cid}\r\neth0".encode())
        os.close(fd)
    finally:
        os.close(lock)


def refused(sb: Sandbox, ip: str) -> bool:
    res = sb.podman("run", "-d", "--name", "twin", "--network", NET, "--ip", ip, IMAGE,
                    "sleep", "1000", check=False)  # fmt: skip
    if res.returncode == 0:
        sb.podman("rm", "-f", "-t0", "twin")
        return False
    assert NOT_AVAILABLE.format(ip=ip) in res.stderr, show(res)
    sb.podman("rm", "-f", "-t0", "twin", check=False)
    return True


def assert_as_podman_expects(sb: Sandbox, *roots: StorageRoot, reusable: str = LEAK) -> None:
    """The files hold exactly the running containers' addresses, and ``reusable`` can be
    had again with ``podman run --ip`` (then given back)."""
    assert held(sb) == expected(sb, roots)
    assert not refused(sb, reusable)
    assert held(sb) == expected(sb, roots)


def repair(sb: Sandbox, *args: str, rc: int | None = 0) -> dict[str, Any]:
    res = ig(sb, "repair", "--yes", "--grace", "0", "--json", "--backup-dir", BACKUPS, *args,
             rc=rc)  # fmt: skip
    return dict(as_json(res))


def released(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["network"], f["ip"], f["container_id"]) for f in doc["released"]}


# --------------------------------------------------------------------------- the seed


def test_seed_incident_found_by_check_and_repaired(cni: Sandbox) -> None:
    keeper = cni.podman("run", "-d", "--name", "keeper", "--network", NET, "--ip",
                        "172.19.10.12", IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    dynamic = cni.podman("run", "-d", "--name", "dyn", "--network", NET, IMAGE,
                         "sleep", "1000").stdout.strip()  # fmt: skip
    leak = stage_leak(cni, "victim", LEAK)
    assert refused(cni, LEAK)  # the field report's error, exactly
    cni.start_podman_service()
    live_files = {k: v for k, v in files(cni).items() if k != (NET, LEAK)}

    res = ig(cni, "check", "--json", rc=1)
    doc = as_json(res)
    assert [s["kind"] for s in doc["stores"]] == ["cni"]  # podman uses CNI: no ipam.db
    [finding] = doc["findings"]
    assert (finding["store"], finding["kind"], finding["network"], finding["subnet"]) == (
        "cni", "leaked", NET, SUBNET
    )  # fmt: skip
    assert (finding["ip"], finding["container_id"]) == (LEAK, leak)
    assert not any("ids entry" in e for e in finding["evidence"])  # CNI has no index

    doc = repair(cni)
    assert released(doc) == {(NET, LEAK, leak)}
    print(f"lock held {doc['lock_hold_ms']} ms")
    assert 0 < doc["lock_hold_ms"] < 50
    record = doc["backup"]
    assert os.path.basename(record).startswith("release.cni.")
    assert (NET, LEAK) not in files(cni)
    now = files(cni)
    assert {k: now[k] for k in live_files} == live_files  # live containers' files, as they were
    assert held(cni) == {(NET, "172.19.10.12"): keeper, **{k: v for k, v in held(cni).items()
                                                         if v == dynamic}}  # fmt: skip
    ig(cni, "check", rc=0)
    assert_as_podman_expects(cni)


def test_a_removed_network_that_still_holds_a_leak_is_an_orphan(cni: Sandbox) -> None:
    """``podman network rm`` removes the .conflist, never the network's directory (its
    lock and last_reserved_ip.0 stay): with a leaked address in it, an orphan network."""
    leak = stage_leak(cni, "victim", LEAK)
    cni.podman("network", "rm", NET)
    cni.start_podman_service()
    doc = as_json(ig(cni, "check", "--json", rc=1))
    [finding] = doc["findings"]
    assert (finding["kind"], finding["network"], finding["releasable"]) == (
        "orphan-network", NET, True
    )  # fmt: skip
    doc = repair(cni)
    assert [(f["kind"], f["network"]) for f in doc["released"]] == [("orphan-network", NET)]
    assert sorted(n for _, n in files(cni)) == ["last_reserved_ip.0", "lock"]
    assert leak not in held(cni).values()
    ig(cni, "check", rc=0)  # what is left holds nothing: no finding
    cni.network_create(NET, SUBNET)  # the name and the address can be had again
    assert_as_podman_expects(cni)


def test_restore_of_a_release_record_puts_the_file_back(cni: Sandbox) -> None:
    leak = stage_leak(cni, "victim", LEAK)
    cni.start_podman_service()
    before = files(cni)[(NET, LEAK)]
    record = repair(cni)["backup"]
    res = ig(cni, "restore", record, "--yes", "--json", rc=0)
    doc = as_json(res)
    assert doc["written"] and [(a["ip"], a["container_id"]) for a in doc["added"]] == [(LEAK, leak)]
    assert files(cni)[(NET, LEAK)] == before  # byte for byte
    assert refused(cni, LEAK)  # the leak is back, exactly
    other = cni.podman("run", "-d", "--name", "taker", "--network", NET, IMAGE, "sleep",
                       "1000").stdout.strip()  # fmt: skip
    repair(cni)  # released again
    taken = cni.podman("run", "-d", "--name", "t2", "--network", NET, "--ip", LEAK, IMAGE,
                       "sleep", "1000").stdout.strip()  # fmt: skip
    res = ig(cni, "restore", record, "--yes", rc=2)  # taken since: refused
    assert f"{NET}/{LEAK} is held by {taken} now" in res.stderr
    assert held(cni)[(NET, LEAK)] == taken
    cni.podman("rm", "-f", "-t0", "t2", "taker")
    assert other not in held(cni).values()
    assert_as_podman_expects(cni)


def test_daemon_repairs_the_seed(cni: Sandbox) -> None:
    cni.start_podman_service()
    cni.start_journald()
    keeper = cni.podman("run", "-d", "--name", "keeper", "--network", NET, IMAGE, "sleep",
                        "1000").stdout.strip()  # fmt: skip
    conf = "/var/tmp/ipamguard.toml"
    cni.host_path(conf).write_text(
        "[repair]\nenabled = true\ngrace_seconds = 0\n[watch]\ndebounce_seconds = 0.2\n"
        f'[paths]\nbackup_dir = "{BACKUPS}"\n'
    )
    proc = cni.ipamguard_popen("daemon", "--config", conf)
    try:
        assert cni.wait_journal(timeout=20, MESSAGE_ID=messages.DAEMON_STARTED)
        leak = stage_leak(cni, "victim", LEAK)
        [entry] = cni.wait_journal(timeout=20, MESSAGE_ID=messages.LEAK_RELEASED)
        assert (entry["IPAMGUARD_STORE"], entry["IPAMGUARD_IP"]) == ("cni", LEAK)
        assert entry["IPAMGUARD_CONTAINER_ID"] == leak
        assert entry["IPAMGUARD_NETWORK"] == NET and entry["IPAMGUARD_SUBNET"] == SUBNET
        assert (NET, LEAK) not in files(cni)
        assert keeper in held(cni).values()
        # a leak podman's events do not announce: only CNI's files change (inotify)
        fake = hashlib.sha256(b"ipamguard-e2e-cni").hexdigest()
        inject_leak(cni, "172.19.10.77", fake)
        deadline = time.monotonic() + 20
        while (NET, "172.19.10.77") in files(cni) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (NET, "172.19.10.77") not in files(cni)
        assert proc.poll() is None
    finally:
        cni.signal(proc)
        proc.wait(15)
    assert proc.returncode == 0
    assert_as_podman_expects(cni)


def test_a_running_container_of_another_storage_root_is_never_touched(cni: Sandbox) -> None:
    alt = cni.second_root("alt")
    other = cni.podman("run", "-d", "--name", "other-root", "--network", NET, "--ip",
                       "172.19.10.20", IMAGE, "sleep", "1000", root=alt).stdout.strip()  # fmt: skip
    leak = stage_leak(cni, "victim", LEAK)
    cni.start_podman_service()  # of the default root: it does not list ``other``
    before = files(cni)[(NET, "172.19.10.20")]
    doc = repair(cni, "--kind", "leaked,stale")
    assert released(doc) == {(NET, LEAK, leak)}
    assert files(cni)[(NET, "172.19.10.20")] == before
    assert held(cni)[(NET, "172.19.10.20")] == other
    assert cni.podman("inspect", "--format", "{{.State.Running}}", other,
                      root=alt).stdout.strip() == "true"  # fmt: skip
    ig(cni, "check", rc=0)  # runtime state and conmon see it alive
    assert_as_podman_expects(cni, alt)


def test_repairs_while_podman_starts_and_removes_containers(cni: Sandbox) -> None:
    """podman run/rm in a loop (static and dynamic addresses) while repairs run, each
    with a fresh leak to release: no podman command fails, only the leaks go."""
    steady = cni.podman("run", "-d", "--name", "steady", "--network", NET, "--ip",
                        "172.19.10.50", IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    leak = stage_leak(cni, "victim", LEAK)
    cni.start_podman_service()
    churn = RunRmLoop(cni, NET, 16, IMAGE)
    churn.start()
    repairs: list[tuple[bool, str, subprocess.CompletedProcess[str]]] = []
    try:
        while len(repairs) < 8 or not churn.done.is_set():
            n = len(repairs)
            fake = hashlib.sha256(f"ipamguard-e2e-cni-{n}".encode()).hexdigest()
            if n:
                inject_leak(cni, f"172.19.10.{200 + n}", fake)
            during = not churn.done.is_set()
            res = cni.ipamguard("repair", "--yes", "--grace", "0", "--json", "--backup-dir",
                                BACKUPS, check=False, timeout=60)  # fmt: skip
            repairs.append((during, fake, res))
            if len(repairs) >= 30:
                break
    finally:
        churn.join()
    failed = [show(r) for r in churn.results if r.returncode != 0]
    assert not failed, "\n".join(failed)
    assert sum(during for during, _, _ in repairs) >= 3, "the repairs did not overlap the churn"
    holds: list[float] = []
    for n, (_, fake, res) in enumerate(repairs):
        assert "Traceback" not in res.stderr, show(res)
        if res.returncode == 2:  # the store changed at every one of its looks
            assert "changed since it was" in res.stderr, show(res)
            continue
        assert res.returncode in (0, 1), show(res)
        doc = as_json(res)
        ip, owner = (f"172.19.10.{200 + n}", fake) if n else (LEAK, leak)
        got = released(doc)
        assert got <= {(NET, ip, owner)} | {(NET, f"172.19.10.{200 + m}", repairs[m][1])
                                            for m in range(1, n)}, show(res)  # fmt: skip
        holds.append(doc["lock_hold_ms"])
    assert sum(res.returncode == 0 for _, _, res in repairs) >= len(repairs) // 2
    print(f"lock held per repair: max {max(holds)} ms, median {sorted(holds)[len(holds) // 2]} ms")
    ig(cni, "repair", "--yes", "--grace", "0", "--backup-dir", BACKUPS, rc=0)  # what is left
    running = set(cni.podman("ps", "-q", "--no-trunc").stdout.split())
    assert running == {steady, *(cni.container_id(k) for k in churn.kept)}
    assert set(held(cni).values()) == running  # only the running containers hold anything
    assert_as_podman_expects(cni)
