"""``ipamguard release`` against a real, sandboxed rootful podman.

The seed incident (a removed container whose static IP stays allocated) is staged
in the sandbox's real /run/containers/networks/ipam.db; ipamguard runs inside the
sandbox on the default paths, podman keeps running around it, and every file that
ipamguard wrote ends with Go bbolt's own consistency check (the oracle).
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from cli_helpers import as_json, ig, show
from oracle_tool import Oracle
from sandbox import IMAGE, IPAM_DB, Sandbox

pytestmark = pytest.mark.e2e

NET = "ipg-a"
SUBNET = "172.19.10.0/24"


# --------------------------------------------------------------------------- helpers


def db_sha(sb: Sandbox) -> str:
    return hashlib.sha256(sb.read_file(IPAM_DB)).hexdigest()


def allocations(oracle: Oracle, sb: Sandbox) -> dict[tuple[str, str], str]:
    """{(network, ip): container ID}, read by Go bbolt."""
    return oracle.ipam_held(sb.host_path(IPAM_DB))


def ids_entries(oracle: Oracle, sb: Sandbox) -> dict[tuple[str, str], list[str]]:
    """{(network, container ID): IPs} of the ids buckets, read by Go bbolt."""
    dump = oracle.ipam_dump(sb.host_path(IPAM_DB))
    return {(n["name"], e["container_id"]): e["ips"] for n in dump["networks"] for e in n["ids"]}


def container_ips(sb: Sandbox, name: str) -> dict[str, str]:
    """{network: IP} of a container, as podman sees it."""
    out = sb.podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", name).stdout
    return {net: v["IPAddress"] for net, v in json.loads(out).items()}


def assert_oracle_clean(oracle: Oracle, sb: Sandbox) -> None:
    assert oracle.check(sb.host_path(IPAM_DB)) == []


def run_static(sb: Sandbox, name: str, ip: str) -> str:
    return sb.podman(
        "run", "-d", "--name", name, "--network", NET, "--ip", ip, IMAGE, "sleep", "1000"
    ).stdout.strip()


# --------------------------------------------------------------------------- tests


def test_release_forced_then_again_and_podman_keeps_working(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    sandbox.network_create(NET, SUBNET)
    healthy = sandbox.podman(
        "run", "-d", "--name", "healthy", "--network", NET, IMAGE, "sleep", "1000"
    ).stdout.strip()
    leak = sandbox.stage_leak("victim", NET, "172.19.10.11")
    before = allocations(oracle, sandbox)
    assert before[(NET, "172.19.10.11")] == leak

    # --dry-run: prints what it would remove, changes nothing
    sha = db_sha(sandbox)
    res = ig(sandbox, "release", "--container", leak[:12], "--force", "--dry-run", rc=0)
    assert "172.19.10.11" in res.stdout, show(res)
    res = ig(sandbox, "release", "--container", leak[:12], "--force", "--dry-run", "--json", rc=0)
    doc = as_json(res)
    assert doc["container_id"] == leak
    assert [a["ip"] for a in doc["allocations"]] == ["172.19.10.11"]
    assert db_sha(sandbox) == sha

    # without --yes and without a terminal: refused, unchanged
    ig(sandbox, "release", "--container", leak[:12], "--force", rc=2)
    assert db_sha(sandbox) == sha

    res = ig(sandbox, "release", "--container", leak[:12], "--force", "--yes", "--json", rc=0)
    doc = as_json(res)
    assert doc["container_id"] == leak
    assert [(a["network"], a["ip"]) for a in doc["allocations"]] == [(NET, "172.19.10.11")]
    after = allocations(oracle, sandbox)
    assert (NET, "172.19.10.11") not in after
    assert {k: v for k, v in before.items() if v != leak} == after
    assert (NET, leak) not in ids_entries(oracle, sandbox)
    assert_oracle_clean(oracle, sandbox)

    # again: nothing to release, exit 1, file untouched
    sha = db_sha(sandbox)
    res = ig(sandbox, "release", "--container", leak[:12], "--force", "--yes", rc=1)
    assert leak[:12] in res.stderr, show(res)
    assert db_sha(sandbox) == sha

    # interop: podman hands the address out again and keeps working with the file
    reused = run_static(sandbox, "reuse", "172.19.10.11")
    assert container_ips(sandbox, "reuse") == {NET: "172.19.10.11"}
    for i in range(4):
        name = f"cycle{i}"
        net_args = ["--ip", f"172.19.10.{40 + i}"] if i % 2 else []
        sandbox.podman("run", "-d", "--name", name, "--network", NET, *net_args, IMAGE,
                       "sleep", "1000")  # fmt: skip
        sandbox.podman("stop", "-t0", name)
        sandbox.podman("start", name)
        sandbox.podman("rm", "-f", "-t0", name)
    sandbox.podman("stop", "-t0", "reuse")
    sandbox.podman("rm", "reuse")
    final = allocations(oracle, sandbox)
    assert reused not in final.values()
    assert final == {k: v for k, v in before.items() if v == healthy}
    assert_oracle_clean(oracle, sandbox)


def test_release_refuses_live_or_unknown_and_releases_dead(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    sandbox.network_create(NET, SUBNET)
    live = run_static(sandbox, "live", "172.19.10.20")
    dead = sandbox.stage_leak("dead", NET, "172.19.10.11")
    blind = sandbox.stage_leak("blind", NET, "172.19.10.12")
    sandbox.start_podman_service()
    sha = db_sha(sandbox)

    # a running container, podman answering: refused, the file untouched
    for args in ((), ("--json",), ("--network", NET)):
        res = ig(sandbox, "release", "--container", live[:12], "--yes", *args, rc=2)
        assert re.search(r"alive|running|\blive\b", res.stderr, re.I), show(res)
        assert db_sha(sandbox) == sha
    # --dry-run of a live container writes nothing either (whatever it says)
    res = ig(sandbox, "release", "--container", live[:12], "--dry-run")
    assert res.returncode in (0, 2), show(res)
    assert db_sha(sandbox) == sha
    assert allocations(oracle, sandbox)[(NET, "172.19.10.20")] == live

    # a container that no source knows, podman answering: released without --force
    res = ig(sandbox, "release", "--container", dead[:12], "--yes", "--json", rc=0)
    assert [a["ip"] for a in as_json(res)["allocations"]] == ["172.19.10.11"]
    assert (NET, "172.19.10.11") not in allocations(oracle, sandbox)
    assert_oracle_clean(oracle, sandbox)

    # no API socket: the podman command is asked instead, and the live one is refused
    sandbox.stop_podman_service()
    sha = db_sha(sandbox)
    res = ig(sandbox, "release", "--container", live[:12], "--yes", rc=2)
    assert re.search(r"\blive\b", res.stderr), show(res)
    assert db_sha(sandbox) == sha
    # an explicit --url nobody listens on: liveness unknown -> refused, dead or live
    for cid in (blind, live):
        res = ig(sandbox, "release", "--container", cid[:12], "--yes",
                 "--url", "unix:///run/podman/nobody.sock", rc=2)  # fmt: skip
        assert re.search(r"\blive\b|unknown", res.stderr), show(res)
        assert db_sha(sandbox) == sha
    # --force does not ask
    ig(sandbox, "release", "--container", blind[:12], "--force", "--yes", rc=0)
    assert allocations(oracle, sandbox) == {(NET, "172.19.10.20"): live}

    # podman reuses both released addresses; the live container was never touched
    for i, ip in enumerate(("172.19.10.11", "172.19.10.12")):
        run_static(sandbox, f"again{i}", ip)
        assert container_ips(sandbox, f"again{i}") == {NET: ip}
    assert container_ips(sandbox, "live") == {NET: "172.19.10.20"}
    assert ids_entries(oracle, sandbox)[(NET, live)] == ["172.19.10.20"]
    sandbox.podman("rm", "-f", "-t0", "again0", "again1", "live")
    assert allocations(oracle, sandbox) == {}
    assert_oracle_clean(oracle, sandbox)
