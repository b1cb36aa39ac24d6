"""``python -m ipamguard daemon`` as a process: sd_notify, SIGHUP, SIGTERM, exit codes.

The test binds the notification socket and passes it as NOTIFY_SOCKET, as systemd
would. The reconcile is the recording stand-in (run by ``python -m daemon_with_cycle
recording_cycle:make_cycle``, the same ``run_daemon`` without the CLI); the
process, its triggers (inotify on a temporary ipam.db), signals and sd_notify are
real. podman's URL points at a socket that does not exist: the daemon must run
(and say so) without podman.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def write_config(path: Path, tmp: Path, extra: str = "") -> None:
    path.write_text(
        f"""
[paths]
db = "{tmp}/networks/ipam.db"
[podman]
url = "unix://{tmp}/no-podman.sock"
[watch]
debounce_seconds = 0.05
{extra}"""
    )


class Daemon:
    """The daemon process, its notification socket and its records."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.config = tmp / "ipamguard.toml"
        self.record = tmp / "cycles.jsonl"
        self.db = tmp / "networks" / "ipam.db"
        self.db.parent.mkdir(exist_ok=True)
        if not self.config.exists():
            write_config(self.config, tmp)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify"))
        self.notify.settimeout(10)
        self.messages: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon_with_cycle", "recording_cycle:make_cycle",
             "--config", str(self.config), "--log-format", "json", *args],
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": f"{REPO}:{HERE}",
                "NOTIFY_SOCKET": str(tmp / "notify"),
                "IPAMGUARD_TEST_RECORD": str(self.record),
                # the status file and counters, as systemd passes them (not the host's)
                "RUNTIME_DIRECTORY": str(tmp / "run"),
                "STATE_DIRECTORY": str(tmp / "state"),
                **(env or {}),
            },
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def next_message(self) -> str:
        text = self.notify.recv(4096).decode()
        self.messages.append((time.monotonic(), text))
        return text

    def wait_message(self, key: str) -> str:
        """The next notification containing ``key=`` (others are kept in messages)."""
        while True:
            text = self.next_message()
            if f"\n{key}=" in "\n" + text:
                return text

    def cycles(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def wait_cycles(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.cycles()) < n:
            assert time.monotonic() < deadline, f"{len(self.cycles())} cycles, wanted {n}"
            time.sleep(0.02)
        return self.cycles()

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = 5.0
    ) -> tuple[int, list[dict[str, Any]]]:
        self.proc.send_signal(sig)
        _out, err = self.proc.communicate(timeout=timeout)
        self.notify.setblocking(False)
        while True:  # what is left on the socket
            try:
                self.next_message()
            except BlockingIOError:
                break
        self.notify.close()
        logs = [json.loads(line) for line in err.decode().splitlines()]
        return self.proc.returncode, logs

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.notify.close()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(tmp_path, *args, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def test_ready_status_watchdog_reload_and_stop(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(env={"WATCHDOG_USEC": "400000"})
    ready = d.wait_message("READY")
    # podman's socket is missing: ", podman unreachable" follows, before or after READY
    assert ready.startswith("READY=1\nSTATUS=2 networks, 5 allocations, 1 open finding, repair off")
    assert [c["reason"] for c in d.cycles()] == ["start"]
    assert d.wait_message("WATCHDOG") == "WATCHDOG=1\n"
    assert d.wait_message("WATCHDOG") == "WATCHDOG=1\n"

    # a change of ipam.db: one reconcile
    d.db.write_bytes(b"x")
    cycles = d.wait_cycles(2)
    assert cycles[1]["reason"].startswith("db-changed: IN_CREATE ipam.db")

    # SIGHUP with a good file: RELOADING, READY, a reconcile with the new config
    write_config(d.config, tmp_path, "[repair]\nenabled = true\ngrace_seconds = 0\n")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_message("RELOADING").startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert d.wait_message("READY").startswith("READY=1\nSTATUS=")
    cycles = d.wait_cycles(3)
    assert cycles[2]["reason"] == "configuration reloaded"
    assert (cycles[2]["repair_enabled"], cycles[2]["grace_seconds"]) == (True, 0.0)

    # SIGHUP with a bad file: still running, on the previous config
    d.config.write_text("[repair]\ngrace_seconds = 'soon'\n")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_message("RELOADING")
    assert d.wait_message("READY")
    d.db.write_bytes(b"y")
    cycles = d.wait_cycles(4)
    assert cycles[3]["reason"].startswith("db-changed")
    assert (cycles[3]["repair_enabled"], cycles[3]["grace_seconds"]) == (True, 0.0)
    assert d.proc.poll() is None

    stop_sent = time.monotonic()
    code, logs = d.stop()
    assert code == 0
    assert time.monotonic() - stop_sent < 3
    texts = [text for _, text in d.messages]
    assert "STOPPING=1\n" in texts
    assert set(texts[texts.index("STOPPING=1\n") + 1 :]) <= {"WATCHDOG=1\n"}
    events = [e["event"] for e in logs]
    assert "ipamguard daemon started" in events
    # the socket does not exist: the first alert says how to enable podman's API
    unreachable = next(e for e in events if e.startswith("podman is unreachable"))
    assert unreachable.startswith("podman is unreachable; nothing is released until it answers")
    assert "systemctl enable --now podman.socket" in unreachable
    assert "configuration reloaded" in events
    rejected = next(e for e in logs if e["event"].startswith("new configuration rejected"))
    assert rejected["error"] == (
        f"{d.config}: [repair] grace_seconds: expected seconds between 0 and 86400, got 'soon'"
    )
    assert rejected["message_id"] == "5f6bbb6535b4414e83b4846faa5ff783"
    assert events[-1] == "stopping"
    assert all(e["level"] in ("info", "warning", "error") for e in logs)
    assert not any(e["level"] == "error" and e is not rejected for e in logs)


def test_sigterm_during_a_reconcile_finishes_it_and_exits_0(daemon_factory: Any) -> None:
    d = daemon_factory(env={"IPAMGUARD_TEST_CYCLE_SECONDS": "0.6"})
    d.wait_message("READY")
    d.db.write_bytes(b"x")
    time.sleep(0.3)  # the second reconcile runs now
    code, logs = d.stop(signal.SIGTERM)
    assert code == 0
    cycles = d.cycles()
    assert len(cycles) == 2 and cycles[1]["end"] > cycles[1]["start"] + 0.5  # finished
    assert any(e["event"] == "stopping after the running reconcile" for e in logs)


def test_sigint_exits_0(daemon_factory: Any) -> None:
    d = daemon_factory()
    d.wait_message("READY")
    code, logs = d.stop(signal.SIGINT)
    assert code == 0
    assert logs[-1]["signal"] == "SIGINT"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipamguard", "daemon", *args],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": f"{REPO}:{HERE}"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[watch]\nresync_seconds = 0\n")
    result = run_cli("--config", str(bad))
    assert result.returncode == 2
    assert result.stderr == (
        f"ipamguard: error: {bad}: [watch] resync_seconds: expected seconds, more than 0 "
        "and at most 86400, got 0\n"
    )
    missing = run_cli("--config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2
    assert missing.stderr == f"ipamguard: error: {tmp_path}/missing.toml: no such file\n"


def test_the_shipped_cli_has_no_test_hook() -> None:
    result = run_cli("--cycle", "recording_cycle:make_cycle")
    assert result.returncode == 2 and "unrecognized arguments: --cycle" in result.stderr


def test_status_reads_the_running_daemon_and_sees_it_stop(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The status file lands in $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=);
    ``ipamguard status`` reads it in another process, with the daemon's pid."""
    d = daemon_factory()
    d.wait_message("READY")
    state = tmp_path / "run" / "state.json"

    def status() -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "ipamguard", "status", "--json", "--state-file", str(state)],
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    code, report = status()  # running; podman's socket is missing: unhealthy
    assert report["state"]["pid"] == d.proc.pid and report["state"]["running"]
    assert report["state"]["last_cycle"]["reason"] == "start"
    assert (code, report["status"]) == (2, "unhealthy")
    assert report["reasons"] == ["podman is unreachable: nothing is released meanwhile"]
    assert d.stop()[0] == 0
    code, report = status()
    assert (code, report["status"]) == (2, "not running")
    assert report["reasons"][0].startswith("the daemon stopped ")
