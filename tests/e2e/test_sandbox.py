"""The e2e harness itself: a real podman, the seed incident, journald, the API."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from sandbox import FLAVOURS, IMAGE, IPAM_DB, Sandbox, host_links, require_sandbox

pytestmark = pytest.mark.e2e

NET = "ipg-test"
SUBNET = "172.19.10.0/24"
LEAKY_LINKS = ("podman", "veth", "cni", "netavark")


def host_ip_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_static_ip_container_stays_in_the_sandbox(sandbox: Sandbox) -> None:
    before = host_ip_links()
    sandbox.network_create(NET, SUBNET)
    bridge = json.loads(sandbox.podman("network", "inspect", NET).stdout)[0]["network_interface"]
    sandbox.podman("run", "-d", "--name", "web", "--network", NET, "--ip", "172.19.10.11",
                   IMAGE, "sleep", "1000")  # fmt: skip
    addr = sandbox.podman("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert "172.19.10.11/24" in addr
    inspect = sandbox.podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", "web")
    assert json.loads(inspect.stdout)[NET]["IPAddress"] == "172.19.10.11"

    # the bridge and veth exist in the sandbox's netns (and its own /sys/class/net) only
    inside = sandbox.run("ip", "-o", "link").stdout
    assert bridge in inside
    assert sandbox.host_path(f"/sys/class/net/{bridge}").exists()
    after = host_ip_links()
    assert bridge not in after
    assert not {link for link in after - before if link.startswith(LEAKY_LINKS)}
    assert bridge not in host_links()
    # the real default paths are used inside, and exist only there
    assert sandbox.host_path(IPAM_DB).is_file()
    assert sandbox.host_path(f"/etc/containers/networks/{NET}.json").is_file()


def test_seed_incident_reproduces(sandbox: Sandbox) -> None:
    sandbox.network_create(NET, SUBNET)
    cid = sandbox.stage_leak("victim", NET, "172.19.10.11")
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert sandbox.podman("ps", "-a", "-q").stdout.strip() == ""  # the container is gone

    res = sandbox.podman("run", "-d", "--network", NET, "--ip", "172.19.10.11", IMAGE,
                         "sleep", "1000", check=False)  # fmt: skip
    assert res.returncode != 0
    assert (
        f"IPAM error: requested ip address 172.19.10.11 is already allocated "
        f"to container ID {cid}" in res.stderr
    )
    sandbox.podman("run", "-d", "--network", NET, "--ip", "172.19.10.12", IMAGE, "sleep", "1000")


def test_seed_incident_on_two_networks(sandbox: Sandbox) -> None:
    sandbox.network_create("net-a", "172.19.10.0/24")
    sandbox.network_create("net-b", "172.19.20.0/24")
    # podman 4.3 refuses --ip with more than one network
    res = sandbox.podman("run", "--network", "net-a", "--network", "net-b",
                         "--ip", "172.19.10.5", IMAGE, "true", check=False)  # fmt: skip
    assert "--ip can only be set for a single network" in res.stderr

    cid = sandbox.stage_leak_multi("victim", {"net-a": "172.19.10.11", "net-b": "172.19.20.11"})
    for net, ip in (("net-a", "172.19.10.11"), ("net-b", "172.19.20.11")):
        res = sandbox.podman("run", "--network", f"{net}:ip={ip}", IMAGE, "true", check=False)
        assert f"requested ip address {ip} is already allocated to container ID {cid}" in (
            res.stderr
        )


def test_second_storage_root_shares_ipam_db(sandbox: Sandbox) -> None:
    sandbox.network_create(NET, SUBNET)
    other = sandbox.second_root("other")
    cid = sandbox.podman("run", "-d", "--name", "elsewhere", "--network", f"{NET}:ip=172.19.10.30",
                         IMAGE, "sleep", "1000", root=other).stdout.strip()  # fmt: skip
    assert sandbox.podman("ps", "-a", "-q").stdout.strip() == ""  # not in the default root
    res = sandbox.podman("run", "--network", f"{NET}:ip=172.19.10.30", IMAGE, "true", check=False)
    assert f"already allocated to container ID {cid}" in res.stderr


def test_journald_in_the_sandbox(sandbox: Sandbox) -> None:
    sandbox.start_journald()
    sandbox.journal_send("native hello", FOO="bar", SYSLOG_IDENTIFIER="ipg-native")
    sandbox.run("systemd-cat", "-t", "ipg-cat", "-p", "warning", "echo", "via systemd-cat")
    sandbox.run("logger", "-t", "ipg-logger", "--journald", input="MESSAGE=via logger\nBAZ=qux\n")

    native = sandbox.wait_journal(FOO="bar")
    assert [(e["MESSAGE"], e["SYSLOG_IDENTIFIER"], e["_TRANSPORT"]) for e in native] == [
        ("native hello", "ipg-native", "journal")
    ]
    cat = sandbox.wait_journal(SYSLOG_IDENTIFIER="ipg-cat")
    assert [(e["MESSAGE"], e["PRIORITY"], e["_TRANSPORT"]) for e in cat] == [
        ("via systemd-cat", "4", "stdout")
    ]
    logged = sandbox.wait_journal(BAZ="qux")
    assert [e["MESSAGE"] for e in logged] == ["via logger"]
    # the host's kernel log is not imported (ReadKMsg=no)
    assert not sandbox.journal_entries("_TRANSPORT=kernel")


def test_podman_api_and_podman_py(sandbox: Sandbox) -> None:
    sandbox.network_create(NET, SUBNET)
    cid = sandbox.podman("run", "-d", "--name", "api-1", "--network", NET, IMAGE,
                         "sleep", "1000").stdout.strip()  # fmt: skip
    sandbox.start_podman_service()
    status, body = sandbox.api_get("/v4.0.0/libpod/containers/json?all=true")
    assert status == 200
    assert [c["Id"] for c in json.loads(body)] == [cid]

    # podman-py from the test process, through /proc/PID/root/run/podman/podman.sock
    with sandbox.podman_client() as client:
        assert client.ping()
        listed = {c.id: c.name for c in client.containers.list(all=True)}
        assert listed == {cid: "api-1"}
        # ...and from inside the sandbox, on the real path
        code = (
            "import podman\n"
            "with podman.PodmanClient(base_url='unix:///run/podman/podman.sock') as c:\n"
            "    print(' '.join(x.name for x in c.containers.list(all=True)))\n"
        )
        assert sandbox.run("python3", "-c", code).stdout.split() == ["api-1"]

    sandbox.stop_podman_service()
    assert not sandbox.api_ping()


@pytest.mark.parametrize("flavour", FLAVOURS, ids=[f"podman{f}" for f in FLAVOURS])
def test_teardown_leaves_nothing_behind(flavour: str) -> None:
    require_sandbox(flavour)
    before = host_ip_links()
    with Sandbox(podman=flavour) as sb:
        sb.network_create(NET, SUBNET)
        sb.stage_leak("victim", NET, "172.19.10.11")
        sb.podman("run", "-d", "--network", NET, IMAGE, "sleep", "1000")
        sb.start_podman_service()
        sb.start_journald()
        cgroups = sb.cgroup_dirs
        assert cgroups
        assert all(d.is_dir() for d in cgroups)
        # podman's container cgroups live below the sandbox's
        assert any(d.glob("libpod_parent/libpod-*") for d in cgroups)
        inside = sb.processes()
        for name in ("conmon", "aardvark-dns", "systemd-journald", "podman system service"):
            assert any(name in p for p in inside), (name, inside)
        pids = sb.host_pids()
        assert len(pids) >= 5
    assert sb.timings["close"] < 5
    new_links = host_ip_links() - before
    assert not {link for link in new_links if link.startswith(LEAKY_LINKS)}
    assert not [d for d in cgroups if d.exists()]
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]


def test_run_reports_failures_and_kills_on_timeout(sandbox: Sandbox) -> None:
    with pytest.raises(AssertionError) as failed:
        sandbox.run("sh", "-c", "echo out; echo err >&2; exit 3")
    for text in ("sh -c", "rc=3", "out", "err"):
        assert text in str(failed.value)
    assert sandbox.run("sh", "-c", "exit 3", check=False).returncode == 3
    assert sandbox.run("cat", input="piped").stdout == "piped"

    with pytest.raises(AssertionError, match="timed out"):
        sandbox.run("sleep", "567", timeout=0.3)
    proc = sandbox.popen("sleep", "678")
    sandbox.signal(proc)
    assert proc.wait(timeout=5) != 0
    assert not [p for p in sandbox.processes() if "sleep 567" in p or "sleep 678" in p]
