"""The daemon's triggers against a real podman (sandbox): events, restarts, the full process.

The last test runs ``python -m ipamguard daemon`` inside the sandbox with the real
default paths (podman's socket, /run/containers/networks/ipam.db) and a real
journald. The reconcile is the recording stand-in (recording_cycle.py): what is
shown here is when and why the daemon reconciles, and what it tells systemd and
the journal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipamguard import messages
from ipamguard.daemon.podman_events import PodmanEvents
from ipamguard.daemon.triggers import Trigger

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = "localhost/bb"


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def test_event_stream_of_a_real_podman(sandbox: Any) -> None:
    sandbox.start_podman_service()
    got: list[Trigger] = []
    loop = asyncio.new_event_loop()
    source = PodmanEvents(sandbox.api_url, backoff_initial=0.1, backoff_max=0.5)
    source.start(loop, got.append)
    try:
        time.sleep(0.3)
        sandbox.network_create("ipg-test", "172.19.10.0/24")
        cid = sandbox.podman(
            "run", "-d", "--name", "web", "--network", "ipg-test", "--ip", "172.19.10.11",
            IMAGE, "sleep", "1000",
        ).stdout.strip()  # fmt: skip
        sandbox.podman("rm", "-f", "-t0", "web")
        sandbox.podman("run", "--name", "once", "--network", "ipg-test", IMAGE, "true")
        sandbox.podman("network", "disconnect", "ipg-test", "once")
        wait_for(lambda: any(t.reason == "network disconnect once" for t in got))
        reasons = [t.reason for t in got]
        web = [t for t in got if t.reason.endswith(" web")]
        assert web[0].reason == "container start web"
        assert web[-1].reason == "container remove web"
        assert "container died web" in reasons
        assert {t.container_id for t in web} == {cid}
        assert "container cleanup once" in reasons  # conmon's cleanup after a normal exit

        sandbox.stop_podman_service()
        wait_for(lambda: got[-1].kind == "podman-down", what="podman-down")
        sandbox.start_podman_service()
        wait_for(lambda: got[-1].kind == "podman-up", what="podman-up")
        kinds = [t.kind for t in got]
        assert kinds.count("podman-down") == 1 and kinds.count("podman-up") == 1
    finally:
        stopping = time.monotonic()
        source.stop()
        assert time.monotonic() - stopping < 0.5
        loop.close()


def test_the_daemon_in_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    sandbox.start_journald()
    sandbox.start_podman_service()
    config = tmp_path / "ipamguard.toml"
    config.write_text("[watch]\ndebounce_seconds = 0.2\n")
    record = tmp_path / "cycles.jsonl"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))  # /tmp is shared with the sandbox
    notify.settimeout(20)

    def cycles() -> list[dict[str, Any]]:
        text = record.read_text() if record.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    proc = sandbox.popen(
        sys.executable, "-m", "daemon_with_cycle", "recording_cycle:make_cycle",
        "--config", str(config),
        env={
            "PYTHONPATH": f"{REPO}:{HERE}",
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "IPAMGUARD_TEST_RECORD": str(record),
        },
    )  # fmt: skip
    try:
        assert notify.recv(4096).startswith(b"READY=1\nSTATUS=")
        (started,) = sandbox.wait_journal(MESSAGE_ID=messages.DAEMON_STARTED)
        assert started["SYSLOG_IDENTIFIER"] == "ipamguard"
        assert started["IPAMGUARD_REPAIR"] == "off"
        assert started["IPAMGUARD_DB"] == "/run/containers/networks/ipam.db"
        assert not sandbox.host_path("/run/containers/networks/ipam.db").exists()  # not yet

        # the first container creates /run/containers/networks/ipam.db
        sandbox.network_create("ipg-test", "172.19.10.0/24")
        sandbox.podman("run", "-d", "--name", "web", "--network", "ipg-test",
                       "--ip", "172.19.10.11", IMAGE, "sleep", "1000")  # fmt: skip
        wait_for(lambda: any("container start web" in c["reason"] for c in cycles()))
        assert any("ipam.db" in c["reason"] for c in cycles()[1:]), cycles()

        removed = time.monotonic()
        sandbox.podman("rm", "-f", "-t0", "web")
        done = time.monotonic()
        after_rm = wait_for(
            lambda: [c for c in cycles() if c["start"] > removed and "remove web" in c["reason"]]
        )
        latency = after_rm[0]["start"] - done
        assert latency < 1.0, latency  # debounce 0.2 s
        time.sleep(0.5)
        # the teardown's events and writes of ipam.db are merged: one reconcile, or two
        # when a pause in the teardown outlasts the debounce (seen under load)
        assert len([c for c in cycles() if c["start"] > removed]) <= 2, cycles()

        # podman goes away and comes back: one alert, then a resync
        sandbox.stop_podman_service()
        sandbox.wait_journal(MESSAGE_ID=messages.PODMAN_UNREACHABLE)
        sandbox.start_podman_service()
        sandbox.wait_journal(MESSAGE_ID=messages.PODMAN_RECONNECTED)
        wait_for(lambda: any(c["reason"].startswith("podman-up") for c in cycles()))
        assert len(sandbox.journal_entries(MESSAGE_ID=messages.PODMAN_UNREACHABLE)) == 1
    finally:
        sandbox.signal(proc, signal.SIGTERM)
        code = proc.wait(timeout=10)
        notify.close()
    assert code == 0
    (stopping,) = sandbox.wait_journal(MESSAGE_ID=messages.DAEMON_STOPPING)
    assert stopping["IPAMGUARD_SIGNAL"] == "SIGTERM"
    assert not sandbox.journal_entries("SYSLOG_IDENTIFIER=ipamguard", "PRIORITY=3")
