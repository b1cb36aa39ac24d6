"""``ipamguard status``: exit 0 healthy, 1 findings, 2 not running, stale or unhealthy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ipamguard.cli import main
from ipamguard.cli.status import assess
from ipamguard.state import process_alive, process_start, state_path, write_state

NOW = 1_800_000_000.0


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
        "started_at": NOW - 3600, "updated_at": NOW - 10, "running": True, "user": False,
        "config": "/etc/ipamguard/ipamguard.toml", "db": "/run/containers/networks/ipam.db",
        "podman_url": "unix:///run/podman/podman.sock", "repair_enabled": False,
        "resync_seconds": 300.0, "subnet_free_percent": 10.0, "podman_reachable": True,
        "cycles": 12, "last_success_at": NOW - 10, "low_subnets": [],
        "last_cycle": {
            "reason": "podman-event", "started_at": NOW - 10.04, "finished_at": NOW - 10,
            "seconds": 0.04, "ok": True, "error": None,
            "summary": "3 networks, 120 allocations, 0 open findings, repair off",
            "networks": 3, "allocations": 120, "open_findings": 0, "repaired": 0,
            "findings": {}, "released": {}, "refused": {},
        },
        "metrics": {"textfile": "/var/lib/prometheus/node-exporter/ipamguard.prom",
                    "written_at": NOW - 10, "error": None},
        "counters": {"releases": {"leaked": 3.0, "stale": 0.0}, "refusals": {"now-live": 1.0}},
    }  # fmt: skip
    doc.update(changes)
    return doc


def failed_cycle() -> dict[str, Any]:
    return {"reason": "resync", "started_at": NOW - 5, "finished_at": NOW - 4.9, "seconds": 0.1,
            "ok": False, "error": "ipam.db: not a bbolt file"}  # fmt: skip


def with_findings(n: int) -> dict[str, Any]:
    last = dict(document()["last_cycle"], open_findings=n, findings={"leaked": n})
    return document(last_cycle=last)


@pytest.mark.parametrize(
    ("doc", "alive", "code", "status"),
    [
        (document(), True, 0, "healthy"),
        (with_findings(2), True, 1, "findings"),
        (document(low_subnets=[{"network": "a", "subnet": "10.1.0.0/24"}]), True, 1, "findings"),
        (None, False, 2, "not running"),
        (document(running=False), False, 2, "not running"),
        (document(), False, 2, "not running"),  # the pid is gone
        (document(last_success_at=NOW - 901), True, 2, "stale"),  # > 3 x 300 s
        (document(last_success_at=NOW - 899), True, 0, "healthy"),
        (document(last_success_at=None, last_cycle=None, started_at=NOW - 60), True, 0,
         "healthy"),  # the first reconcile still runs
        (document(last_success_at=None, last_cycle=None, started_at=NOW - 1000), True, 2,
         "stale"),
        (document(resync_seconds=10.0, last_success_at=NOW - 31), True, 2, "stale"),
        (document(last_cycle=failed_cycle()), True, 2, "unhealthy"),
        (document(podman_reachable=False), True, 2, "unhealthy"),
    ],
)  # fmt: skip
def test_assess(doc: dict[str, Any] | None, alive: bool, code: int, status: str) -> None:
    health = assess(doc, NOW, alive)
    assert (health.exit_code, health.status) == (code, status), health.reasons
    assert (code == 0) == (health.reasons == [])


def status(path: Path, *args: str) -> int:
    return main(["status", "--state-file", str(path), *args])


def test_running_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.json"
    now = time.time()
    doc = document(started_at=now - 7300, last_success_at=now - 12, updated_at=now - 12)
    doc["last_cycle"].update(finished_at=now - 12)
    doc["metrics"].update(written_at=now - 12)
    write_state(str(path), doc)
    assert status(path) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ipamguard: healthy"
    assert f"pid {os.getpid()}, up 2 h 01 min (root's podman)" in out
    assert "12 s ago (podman-event), took 0.040 s: 3 networks, 120 allocations" in out
    assert "released:    leaked 3 (all time)" in out
    assert "refused:     now-live 1 (all time)" in out
    assert "podman:      reachable (unix:///run/podman/podman.sock)" in out
    assert "repair:      off" in out
    assert "metrics:     /var/lib/prometheus/node-exporter/ipamguard.prom, written 12 s ago" in out

    assert status(path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["status"], report["exit_code"], report["reasons"]) == ("healthy", 0, [])
    assert report["state_file"] == str(path) and report["state"]["pid"] == os.getpid()


def test_stale_and_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.json"
    write_state(str(path), document(last_success_at=time.time() - 3600))
    assert status(path) == 2
    assert capsys.readouterr().out.startswith(
        "ipamguard: stale: last successful reconcile 60 min ago (more than 3 x "
        "resync_seconds = 15 min)"
    )
    doc = with_findings(1)
    doc.update(last_success_at=time.time(), low_subnets=[
        {"network": "a", "subnet": "10.1.0.0/24", "free": 3, "size": 253, "free_percent": 1.2}
    ])  # fmt: skip
    write_state(str(path), doc)
    assert status(path) == 1
    out = capsys.readouterr().out
    assert out.startswith("ipamguard: findings: 1 open finding (ipamguard check); 1 subnet low")
    assert "low:         a 10.1.0.0/24: 3 of 253 addresses free (1.2 %)" in out


def test_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert status(tmp_path / "missing.json") == 2
    out = capsys.readouterr().out
    assert out.startswith("ipamguard: not running: no status file")
    # a daemon that died without a word: its pid is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "state.json"
    write_state(str(path), document(pid=dead.pid, last_success_at=time.time()))
    assert status(path, "--json") == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "not running" and str(dead.pid) in report["reasons"][0]
    # a reused pid: the process runs, but started at another time
    assert not process_alive(os.getpid(), (process_start(os.getpid()) or 0) + 1)
    assert process_alive(os.getpid(), process_start(os.getpid()))


def test_a_damaged_status_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    for text in ("{", '{"version": 99}', "[]"):
        path.write_text(text)
        assert status(path) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ipamguard: error: {path}: ") and err.count("\n") == 1


def test_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert state_path(user=False) == "/run/ipamguard/state.json"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert state_path(user=True) == "/run/user/1000/ipamguard/state.json"
