"""The liveness sources against a real, sandboxed rootful podman (runc, conmon, buildah).

The sources run *inside* the sandbox (its /run, /proc and pid namespace are
private): ``python -c PROBE`` prints what every source of the default context saw.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from sandbox import IMAGE, PODMAN_SOCKET, REPO_ROOT, Sandbox

pytestmark = pytest.mark.e2e

API_URL = f"unix://{PODMAN_SOCKET}"
ALL_SOURCES = ["podman-api: running", "conmon: running", "runc: running"]

PROBE = """
import json
from ipamguard.context import Overrides, build_context
from ipamguard.liveness import collect

snap = collect(build_context(False, Overrides(), podman_timeout=3.0).sources())
print(json.dumps({
    "complete": snap.complete,
    "failures": list(snap.failures),
    "containers": {
        cid: {"name": c.name, "running": snap.running(cid), "evidence": snap.evidence(cid)}
        for cid, c in snap.containers.items()
    },
}))
"""


def probe(sandbox: Sandbox) -> dict[str, Any]:
    """collect(every source of the default context) inside the sandbox, as JSON."""
    res = sandbox.run(sys.executable, "-c", PROBE, env={"PYTHONPATH": str(REPO_ROOT)})
    result: dict[str, Any] = json.loads(res.stdout)
    return result


def probe_until(
    sandbox: Sandbox, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Probe until done(snapshot): conmon and runc state outlive `podman stop` briefly."""
    deadline = time.monotonic() + timeout
    while True:
        snap = probe(sandbox)
        if done(snap) or time.monotonic() > deadline:
            return snap
        time.sleep(0.1)


def evidence(snap: dict[str, Any], cid: str) -> list[str] | None:
    entry = snap["containers"].get(cid)
    return None if entry is None else list(entry["evidence"])


def run_container(sandbox: Sandbox, name: str, *args: str, **kw: Any) -> str:
    return sandbox.podman(
        "run", "-d", "--name", name, *args, IMAGE, "sleep", "1000", **kw
    ).stdout.strip()


def test_a_running_container_is_seen_by_every_source(sandbox: Sandbox) -> None:
    sandbox.start_podman_service()
    cid = run_container(sandbox, "web")
    snap = probe(sandbox)
    assert snap["complete"], snap["failures"]
    assert snap["containers"][cid] == {"name": "web", "running": True, "evidence": ALL_SOURCES}


def test_a_stopped_container_exists_but_runs_nowhere(sandbox: Sandbox) -> None:
    sandbox.start_podman_service()
    cid = run_container(sandbox, "web")
    other = run_container(sandbox, "other")
    sandbox.podman("stop", "-t0", "web")
    snap = probe_until(sandbox, lambda s: evidence(s, cid) == ["podman-api: exited"])
    assert snap["complete"], snap["failures"]
    assert snap["containers"][cid] == {
        "name": "web",
        "running": False,
        "evidence": ["podman-api: exited"],
    }
    assert evidence(snap, other) == ALL_SOURCES

    sandbox.podman("rm", "web")
    snap = probe(sandbox)
    assert snap["complete"] and cid not in snap["containers"]  # unknown to every source
    assert evidence(snap, other) == ALL_SOURCES


def test_a_container_of_another_storage_root_is_known(sandbox: Sandbox) -> None:
    """ipam.db is shared by every root; the default API does not list this one."""
    sandbox.network_create("shared", "172.19.10.0/24")
    sandbox.start_podman_service()
    root = sandbox.second_root("other")
    cid = run_container(sandbox, "far", "--network", "shared", root=root)
    mine = run_container(sandbox, "near", "--network", "shared")
    status, body = sandbox.api_get("/v4.0.0/libpod/containers/json?all=true&external=true")
    assert status == 200
    assert [c["Id"] for c in json.loads(body)] == [mine]

    snap = probe(sandbox)
    assert snap["complete"], snap["failures"]
    assert snap["containers"][cid] == {
        "name": "far",  # from conmon's -n
        "running": True,
        "evidence": ["conmon: running", "runc: running"],
    }
    assert evidence(snap, mine) == ALL_SOURCES

    # once stopped (podman released its addresses) it is unknown here: expected
    sandbox.podman("stop", "-t0", "far", root=root)
    snap = probe_until(sandbox, lambda s: cid not in s["containers"])
    assert cid not in snap["containers"]


def test_without_the_api_the_snapshot_is_incomplete(sandbox: Sandbox) -> None:
    cid = run_container(sandbox, "web")  # the service never ran: no socket
    snap = probe(sandbox)
    assert not snap["complete"]
    assert snap["failures"] == [
        f"podman API at {API_URL}: no socket there "
        "(is podman.socket or `podman system service` up?)"
    ]
    assert snap["containers"][cid]["evidence"] == ["conmon: running", "runc: running"]

    sandbox.start_podman_service()
    assert probe(sandbox)["complete"]
    sandbox.stop_podman_service()
    with socket.socket(socket.AF_UNIX) as s:  # a stale socket file, as after a kill -9
        s.bind(str(sandbox.host_path(PODMAN_SOCKET)))
    snap = probe(sandbox)
    assert snap["failures"] == [
        f"podman API at {API_URL}: connection refused (nothing listens on the socket)"
    ]


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_containers(sandbox: Sandbox) -> None:
    """External containers are listed ("storage"); `buildah run` shows in runc's state.

    buildah allocates the address of a `buildah run` under the ID of its runc
    container (buildah-buildahNNN), not under the build container's ID.
    """
    sandbox.network_create("build", "172.19.20.0/24")
    sandbox.start_podman_service()
    sandbox.run("buildah", "from", "--quiet", "--name", "bc", IMAGE)
    bid = sandbox.run("buildah", "inspect", "--format", "{{.ContainerID}}", "bc").stdout.strip()
    snap = probe(sandbox)
    assert snap["containers"][bid] == {
        "name": "bc",
        "running": False,
        "evidence": ["podman-api: storage"],
    }

    runner = sandbox.popen("buildah", "run", "--network", "build", "bc", "sleep", "1000")
    holder = wait_for_allocation(sandbox, "build")
    assert holder.startswith("buildah-buildah")
    snap = probe(sandbox)
    # buildah allocates before its runtime state exists: while a `buildah run` is at
    # work the in-flight source makes the snapshot incomplete (nothing is released)
    (failure,) = snap["failures"]
    assert "buildah run --network build bc sleep 1000" in failure
    assert snap["containers"][holder] == {
        "name": "",
        "running": True,
        "evidence": ["runc: running"],
    }
    assert evidence(snap, bid) == ["podman-api: storage"]
    sandbox.signal(runner)
    runner.wait(timeout=10)
    snap = probe(sandbox)
    assert snap["complete"], snap["failures"]


def wait_for_allocation(sandbox: Sandbox, network: str, timeout: float = 20.0) -> str:
    """The container ID holding the first allocation on network (ipamguard dump)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = sandbox.ipamguard("dump", "--json", check=False)
        if res.returncode == 0:
            for net in json.loads(res.stdout)["networks"]:
                for subnet in net["subnets"] if net["name"] == network else ():
                    if subnet["allocations"]:
                        return str(subnet["allocations"][0]["container_id"])
        time.sleep(0.2)
    raise AssertionError(f"no allocation on {network} after {timeout}s")
