"""The daemon against a real podman, a real podman API service and a real journald.

Everything runs in the sandbox (tests/e2e/sandbox.py); sd_notify goes to a
datagram socket that the test binds in the shared /tmp.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from notify import Notify
from sandbox import IPAM_DB, Sandbox

from ipamguard import messages

pytestmark = pytest.mark.e2e

NET, SUBNET, IP = "a", "172.19.10.0/24", "172.19.10.11"


@contextmanager
def daemon(
    sb: Sandbox, config: str, watchdog_usec: int | None = None
) -> Iterator[tuple[subprocess.Popen[Any], Notify, Path]]:
    with tempfile.TemporaryDirectory(prefix="ipamguard-e2e-") as tmp:
        conf = Path(tmp) / "ipamguard.toml"
        conf.write_text(config)
        notify = Notify(Path(tmp))
        env = {"NOTIFY_SOCKET": notify.path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        proc = sb.ipamguard_popen("daemon", "--config", str(conf), env=env)
        try:
            notify.wait_for("READY=1")
            yield proc, notify, conf
        finally:
            if proc.poll() is None:
                sb.signal(proc, signal.SIGTERM)
                proc.wait(15)


def repair_config(enabled: bool) -> str:
    return (
        f"[repair]\nenabled = {'true' if enabled else 'false'}\ngrace_seconds = 0\n"
        "[watch]\ndebounce_seconds = 0.2\n"
    )


def prepare(sb: Sandbox) -> None:
    sb.network_create(NET, SUBNET)
    sb.start_podman_service()
    sb.start_journald()


def allocations(sb: Sandbox) -> dict[str, str]:
    done = sb.ipamguard("dump", "--json")
    document = json.loads(done.stdout)
    return {
        a["ip"]: a["container_id"]
        for n in document["networks"]
        for s in n["subnets"]
        for a in s["allocations"]
    }


def journal(sb: Sandbox, message_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    return sb.wait_journal(timeout=timeout, MESSAGE_ID=message_id)


def test_repair_on_releases_a_leak_seconds_after_the_remove_event(
    sandbox: Sandbox, oracle: Any
) -> None:
    prepare(sandbox)
    with daemon(sandbox, repair_config(True)) as (proc, notify, _):
        status = notify.wait_for("STATUS=")
        assert "repair on" in status
        removed_at = time.monotonic()
        cid = sandbox.stage_leak("leaky", NET, IP)
        released = journal(sandbox, messages.LEAK_RELEASED)
        assert time.monotonic() - removed_at < 5.0  # staging itself takes ~0.5 s
        (entry,) = released
        assert entry["IPAMGUARD_CONTAINER_ID"] == cid
        assert entry["IPAMGUARD_IP"] == IP
        assert entry["IPAMGUARD_NETWORK"] == NET
        assert entry["IPAMGUARD_SUBNET"] == SUBNET
        assert entry["IPAMGUARD_FINDING"] == "leaked"
        found = journal(sandbox, messages.LEAK_FOUND)
        assert found and found[0]["IPAMGUARD_IP"] == IP
        assert IP not in allocations(sandbox)
        sandbox.podman("run", "-d", "--network", f"{NET}:ip={IP}", "localhost/bb", "sleep", "60")
        assert proc.poll() is None
    assert proc.returncode == 0
    assert "STOPPING=1" in notify.drain()
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


def test_repair_off_alerts_and_leaves_the_leak(sandbox: Sandbox) -> None:
    prepare(sandbox)
    with daemon(sandbox, repair_config(False)) as (_proc, notify, _):
        assert "repair off" in notify.wait_for("STATUS=")
        cid = sandbox.stage_leak("leaky", NET, IP)
        (entry,) = journal(sandbox, messages.LEAK_FOUND)
        assert (entry["IPAMGUARD_CONTAINER_ID"], entry["IPAMGUARD_IP"]) == (cid, IP)
        time.sleep(1.5)  # more triggers: no second alert, no release
        assert len(sandbox.journal_entries(MESSAGE_ID=messages.LEAK_FOUND)) == 1
        assert sandbox.journal_entries(MESSAGE_ID=messages.LEAK_RELEASED) == []
        assert allocations(sandbox)[IP] == cid
        failed = sandbox.podman(
            "run", "--rm", "--network", f"{NET}:ip={IP}", "localhost/bb", "true", check=False
        )
        assert failed.returncode != 0 and "already allocated" in failed.stderr


def test_notify_watchdog_reload_and_stop(sandbox: Sandbox) -> None:
    prepare(sandbox)
    with daemon(sandbox, repair_config(False), watchdog_usec=1_000_000) as (proc, notify, conf):
        notify.wait_for("STATUS=")
        notify.received.clear()
        notify.wait_for("WATCHDOG=1", timeout=3)
        conf.write_text("[repair]\nenabled = 'maybe'\n")
        sandbox.signal(proc, signal.SIGHUP)
        (rejected,) = journal(sandbox, messages.CONFIG_REJECTED)
        assert "enabled" in rejected["MESSAGE"]
        time.sleep(0.5)
        assert proc.poll() is None  # still running, on the old configuration
        conf.write_text(repair_config(True))
        sandbox.signal(proc, signal.SIGHUP)
        journal(sandbox, messages.CONFIG_RELOADED)
        sandbox.signal(proc, signal.SIGTERM)
        assert proc.wait(10) == 0
    assert "STOPPING=1" in notify.drain()


def test_podman_down_then_back(sandbox: Sandbox) -> None:
    prepare(sandbox)
    with daemon(sandbox, repair_config(True)) as (proc, _notify, _):
        sandbox.stop_podman_service()
        cid = sandbox.stage_leak("leaky", NET, IP)
        journal(sandbox, messages.PODMAN_UNREACHABLE)
        digest = sandbox.read_file(IPAM_DB)
        time.sleep(1.5)
        assert sandbox.read_file(IPAM_DB) == digest  # blind: no write at all
        assert allocations(sandbox)[IP] == cid
        sandbox.start_podman_service()
        journal(sandbox, messages.PODMAN_RECONNECTED, timeout=40)
        journal(sandbox, messages.LEAK_RELEASED, timeout=20)
        assert IP not in allocations(sandbox)
        assert proc.poll() is None


def test_churn_with_repair_on_touches_no_live_allocation(sandbox: Sandbox, oracle: Any) -> None:
    prepare(sandbox)
    with daemon(sandbox, repair_config(True)) as (proc, _notify, _):
        keep = sandbox.podman(
            "run", "-d", "--name", "keeper", "--network", f"{NET}:ip=172.19.10.200",
            "localhost/bb", "sleep", "600",
        ).stdout.strip()  # fmt: skip
        failures = []
        for i in range(15):
            static = f"172.19.10.{20 + i}"
            for args in (["--network", f"{NET}:ip={static}"], ["--network", NET]):
                run = sandbox.podman("run", "-d", *args, "localhost/bb", "sleep", "60", check=False)
                if run.returncode != 0:
                    failures.append(run.stderr)
                    continue
                cid = run.stdout.strip()
                rm = sandbox.podman("rm", "-f", "-t0", cid, check=False)
                if rm.returncode != 0:
                    failures.append(rm.stderr)
            if i == 7:
                sandbox.stage_leak("leaky", NET, IP)
        assert failures == []
        deadline = time.monotonic() + 15
        while IP in allocations(sandbox) and time.monotonic() < deadline:
            time.sleep(0.3)
        left = allocations(sandbox)
        assert left == {"172.19.10.200": keep}
        assert proc.poll() is None
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []
