"""Rootless podman 5.4, for real (fixture ``rootless_sandbox``), and ipamguard on it.

The user (uid 1000 of the Debian 13 root) runs podman with a custom bridge network:
its ipam.db lives in $XDG_RUNTIME_DIR/containers/networks, its network configs and
netavark.lock in ~/.local/share/containers/storage/networks (graphroot/networks).
ipamguard runs as that user too (its default when not root: the user's paths).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from cli_helpers import as_json, show
from oracle_tool import Oracle
from sandbox import IMAGE, IPAM_DB, REPO_ROOT, Sandbox

pytestmark = pytest.mark.e2e

NET, SUBNET, IP = "ipg-u", "10.77.0.0/24", "10.77.0.5"


def ig_user(sb: Sandbox, *args: str, rc: int | None = None) -> subprocess.CompletedProcess[str]:
    """``ipamguard ARGS`` as the rootless user; never a traceback."""
    res = sb.ipamguard_user(*args, check=False, timeout=60)
    assert "Traceback" not in res.stderr, show(res)
    if rc is not None:
        assert res.returncode == rc, show(res)
    return res


def allocations(oracle: Oracle, sb: Sandbox) -> dict[tuple[str, str], str]:
    """{(network, ip): container ID} of the user's ipam.db, read by Go bbolt."""
    return oracle.ipam_held(sb.host_path(sb.rootless.ipam_db))


def uid_of(sb: Sandbox, command: str) -> int:
    """The real uid (in the sandbox's user namespace) of the process running command."""
    (pid,) = [p.split()[0] for p in sb.processes() if p.split(maxsplit=1)[1] == command]
    status = sb.host_path(f"/proc/{pid}/status").read_text()
    (uids,) = [line for line in status.splitlines() if line.startswith("Uid:")]
    return int(uids.split()[1])


def test_rootless_podman_keeps_its_network_state_in_the_users_dirs(
    rootless_sandbox: Sandbox,
) -> None:
    sb, user = rootless_sandbox, rootless_sandbox.rootless
    assert sb.podman_version[:2] == (5, 4)
    sb.podman_user("network", "create", NET, "--subnet", SUBNET)
    cid = sb.podman_user("run", "-d", "--name", "u1", "--network", NET, "--ip", IP,
                         IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    addr = sb.podman_user("exec", "u1", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"{IP}/24" in addr
    assert uid_of(sb, "sleep 1000") == user.uid  # root in the container, the user outside

    info: dict[str, Any] = json.loads(sb.podman_user("info", "--format", "json").stdout)
    assert info["host"]["security"]["rootless"] is True
    assert info["host"]["networkBackend"] == "netavark"
    assert info["host"]["rootlessNetworkCmd"] == "pasta"
    assert info["store"]["graphRoot"] == f"{user.home}/.local/share/containers/storage"
    assert info["store"]["runRoot"] == f"{user.runtime_dir}/containers"

    # ipam.db below $XDG_RUNTIME_DIR (the runroot); configs and the lock below graphroot
    db = sb.host_path(user.ipam_db)
    assert cid.encode() in db.read_bytes()
    assert db.stat().st_uid == user.uid
    assert user.network_config_dir == info["store"]["graphRoot"] + "/networks"
    netdir = sb.host_path(user.network_config_dir)
    assert sorted(p.name for p in netdir.iterdir()) == [f"{NET}.json", "netavark.lock"]
    # nothing of it in the rootful places (rootful podman 5.4 creates /run/lock's
    # netavark.lock at its first command, the fixture's image import: root's, untouched)
    assert not sb.host_path(IPAM_DB).exists()
    assert not list(sb.host_path("/etc/containers/networks").iterdir())
    rootful_lock = sb.host_path("/run/lock/netavark.lock")
    assert not rootful_lock.exists() or rootful_lock.stat().st_uid == 0


def test_rootless_seed_incident_check_and_repair(rootless_sandbox: Sandbox, oracle: Oracle) -> None:
    sb = rootless_sandbox
    sb.podman_user("network", "create", NET, "--subnet", SUBNET)
    healthy = sb.podman_user("run", "-d", "--name", "healthy", "--network", NET,
                             IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    leak = sb.stage_leak("victim", NET, IP, user=True)
    res = sb.podman_user("run", "--rm", "--network", NET, "--ip", IP, IMAGE, "true", check=False)
    assert f"requested ip address {IP} is already allocated to container ID {leak}" in res.stderr
    before = allocations(oracle, sb)
    assert before[(NET, IP)] == leak
    sb.start_podman_service(user=True)

    doc = as_json(ig_user(sb, "check", "--json", rc=1))
    assert [(f["kind"], f["network"], f["ip"], f["container_id"]) for f in doc["findings"]] == [
        ("leaked", NET, IP, leak)
    ], doc
    assert doc["liveness"]["complete"] is True, doc["liveness"]

    res = ig_user(sb, "repair", "--yes", "--grace", "0", "--json", rc=0)
    doc = as_json(res)
    assert [(r["network"], r["ip"], r["container_id"]) for r in doc["released"]] == [
        (NET, IP, leak)
    ], show(res)
    assert allocations(oracle, sb) == {k: v for k, v in before.items() if v != leak}
    assert healthy in allocations(oracle, sb).values()
    assert oracle.check(sb.host_path(sb.rootless.ipam_db)) == []
    backup = sb.host_path(doc["backup"])
    assert backup.stat().st_uid == sb.rootless.uid  # written by the user, in its own dirs

    sb.podman_user("run", "-d", "--name", "again", "--network", NET, "--ip", IP,
                   IMAGE, "sleep", "1000")  # fmt: skip
    ig_user(sb, "check", rc=0)
    sb.podman_user("rm", "-f", "-t0", "again", "healthy")
    assert allocations(oracle, sb) == {}
    assert oracle.check(sb.host_path(sb.rootless.ipam_db)) == []


def test_rootless_daemon_heals_the_seed_under_the_users_lock(
    rootless_sandbox: Sandbox, oracle: Oracle
) -> None:
    """``ipamguard daemon --user`` (what the user unit runs), repair on: the seed incident
    healed under the user's netavark.lock, live containers untouched; the release's record
    restores it, as the user; without the user's API socket the CLI asks podman."""
    sb, user = rootless_sandbox, rootless_sandbox.rootless
    sb.podman_user("network", "create", NET, "--subnet", SUBNET)
    healthy = sb.podman_user("run", "-d", "--name", "healthy", "--network", NET,
                             IMAGE, "sleep", "1000").stdout.strip()  # fmt: skip
    leak = sb.stage_leak("victim", NET, IP, user=True)
    sb.start_podman_service(user=True)
    config_dir = f"{user.home}/.config/ipamguard"
    sb.run_as_user("mkdir", "-p", config_dir)
    sb.run_as_user("sh", "-c", f"printf '%s' '[repair]\nenabled = true\ngrace_seconds = 0\n' "
                   f"> {config_dir}/ipamguard.toml")  # fmt: skip
    lock = sb.host_path(f"{user.network_config_dir}/netavark.lock")
    daemon = sb.popen_as_user(
        sb.python, "-m", "ipamguard", "daemon", "--user", "--log-format", "json",
        env={"PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (NET, IP) in allocations(oracle, sb):
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the user's daemon never released the leak"
            time.sleep(0.2)
    finally:
        sb.signal(daemon)
        _, log = daemon.communicate(timeout=20)
    released = [json.loads(line) for line in log.splitlines() if '"released ' in line]
    assert released and released[0]["container_id"] == leak, log[-2000:]
    assert set(allocations(oracle, sb).values()) == {healthy}
    assert lock.stat().st_uid == user.uid  # the user's own lock, as podman uses it
    assert oracle.check(sb.host_path(user.ipam_db)) == []
    record = released[0]["backup"]
    assert record.startswith(f"{user.home}/.local/state/ipamguard/backups/release.netavark.")

    # without the user's API socket, the CLI asks the podman command
    sb.stop_podman_service(user=True)
    res = ig_user(sb, "check", rc=0)
    assert "asked the podman command" in res.stderr, show(res)
    # the record puts the leak back, exactly (the user vouches for it: nothing holds .5)
    ig_user(sb, "restore", record, "--yes", rc=0)
    assert allocations(oracle, sb)[(NET, IP)] == leak
    assert oracle.check(sb.host_path(user.ipam_db)) == []
