"""The daemon's reconcile cycle on a Go-written ipam.db: alert once, never release blind.

podman's API is pointed at a socket that does not exist, so liveness is
incomplete: every finding is "unknown" and nothing may be released even with
repair on. The link check is given its findings as data (the real doctor runs
against a real networkd in tests/doctor).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from oracle_tool import Oracle
from structlog.testing import capture_logs

from ipamguard import messages
from ipamguard.config import Config, PathsConfig, PodmanConfig, RepairConfig
from ipamguard.daemon.cycle import ReconcileCycle
from ipamguard.daemon.linkwatch import LinkWatch
from ipamguard.doctor.analysis import MANAGED, PROBLEM, Finding

pytestmark = pytest.mark.oracle


def config(tmp_path: Path, db: Path, repair: bool) -> Config:
    networks = tmp_path / "networks"
    networks.mkdir(exist_ok=True)
    (networks / "podman1.json").write_text(json.dumps({"name": "podman1"}))
    return Config(
        repair=RepairConfig(enabled=repair, grace_seconds=0),
        podman=PodmanConfig(url=f"unix://{tmp_path}/no-podman.sock", timeout_seconds=0.5),
        paths=PathsConfig(
            db=str(db), network_dir=str(networks), backup_dir=str(tmp_path / "backups")
        ),
    )


def test_blind_cycle_alerts_once_and_releases_nothing(oracle: Oracle, tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    oracle.ipam_gen(db, "podman1", "10.89.0.0/24", 3)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    cycle = ReconcileCycle(LinkWatch(lambda: []))
    with capture_logs() as first:
        result = cycle.run("test", config(tmp_path, db, repair=True))
    assert (result.networks, result.allocations, result.open_findings) == (1, 3, 3)
    assert not result.podman_ok and result.repaired == 0
    found = [e for e in first if e.get("message_id") == messages.LEAK_FOUND]
    assert len(found) == 3 and {e["finding"] for e in found} == {"leaked"}
    assert all(e["releasable"] is False for e in found)
    with capture_logs() as second:
        cycle.run("test", config(tmp_path, db, repair=True))
    assert [e for e in second if e.get("message_id") == messages.LEAK_FOUND] == []
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "backups").exists()


def test_missing_db_is_an_empty_state(tmp_path: Path) -> None:
    cycle = ReconcileCycle(LinkWatch(lambda: []))
    result = cycle.run("test", config(tmp_path, tmp_path / "absent.db", repair=False))
    assert (result.networks, result.allocations, result.open_findings) == (0, 0, 0)


def test_link_problems_alert_once_and_again_when_changed() -> None:
    problems = [Finding(MANAGED, PROBLEM, "networkd manages podman1", link="podman1")]
    watch = LinkWatch(lambda: problems)
    with capture_logs() as logs:
        assert watch.run() == 1
        assert watch.run() == 1
    assert [e["message_id"] for e in logs] == [messages.NETWORKD_CONFLICT]
    problems[0] = Finding(MANAGED, PROBLEM, "networkd manages podman1 (again)", link="podman1")
    with capture_logs() as logs:
        watch.run()
    assert len(logs) == 1 and logs[0]["link"] == "podman1"
    problems.clear()
    assert watch.run() == 0 and watch.alerted == {}


def test_during_a_burst_links_are_checked_once_per_interval_and_the_last_change_too(
    tmp_path: Path,
) -> None:
    """A full look always checks the links; a focused reconcile (a podman event, an
    ipam.db change) within the interval of the last check leaves it out, keeps the last
    check's counts, and asks for a recheck when the next check is due."""
    now = [100.0]
    problems = [Finding(MANAGED, PROBLEM, "networkd manages veth1", link="veth1")]
    runs: list[float] = []

    def doctor() -> list[Finding]:
        runs.append(now[0])
        return problems

    cycle = ReconcileCycle(LinkWatch(doctor, every=5.0, clock=lambda: now[0]))
    conf = config(tmp_path, tmp_path / "absent.db", repair=False)
    first = cycle.run("start", conf)
    assert runs == [100.0] and first.recheck_after is None
    assert first.measures is not None and first.measures.networkd_conflicts == 1
    now[0] = 102.0
    burst = cycle.run("db-changed", conf, frozenset({"c1"}))
    assert runs == [100.0] and burst.recheck_after == pytest.approx(3.0)
    assert burst.measures is not None and burst.measures.networkd_conflicts == 1
    cycle.run("resync", conf)  # a full look checks at once
    assert runs == [100.0, 102.0]
    now[0] = 107.5
    problems.clear()
    recheck = cycle.run("recheck", conf, frozenset())
    assert runs == [100.0, 102.0, 107.5] and recheck.recheck_after is None
    assert recheck.measures is not None and recheck.measures.networkd_conflicts == 0
