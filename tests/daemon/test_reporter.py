"""After every reconcile: counters that survive a restart, the status file, metrics,
capacity alerts once per crossing, refusal reasons as short categories."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from ipamguard import messages
from ipamguard.capacity import SubnetCapacity
from ipamguard.config import Config, MetricsConfig
from ipamguard.daemon.capacitywatch import CapacityWatch
from ipamguard.daemon.cycle_api import CycleMeasures, CycleOutcome, CycleResult
from ipamguard.daemon.measures import REFUSAL_REASONS, measure, refusal_reason
from ipamguard.daemon.reporter import Reporter
from ipamguard.healing import RepairResult
from ipamguard.ipam.model import Allocation, IpamState, Network, Subnet
from ipamguard.reconcile import Finding
from ipamguard.state import load_counters, process_start, read_state

SUBNET = SubnetCapacity("netavark", "a", "10.1.0.0/24", 253, 2, "10.1.0.1")


def config(tmp_path: Path, textfile: bool = True) -> Config:
    prom = str(tmp_path / "prom" / "ipamguard.prom") if textfile else None
    (tmp_path / "prom").mkdir(exist_ok=True)
    return dataclasses.replace(Config(), metrics=MetricsConfig(prom))


def reporter(tmp_path: Path, cfg: Config | None = None) -> Reporter:
    return Reporter(
        cfg or config(tmp_path),
        state_path=str(tmp_path / "run" / "ipamguard" / "state.json"),
        counters_path=str(tmp_path / "lib" / "ipamguard" / "counters.json"),
        config_path="/etc/ipamguard/ipamguard.toml",
    )


def outcome(
    cfg: Config, measures: CycleMeasures | None = None, *, ok: bool = True, at: float = 1000.0
) -> CycleOutcome:
    result = CycleResult(1, 2, sum((measures.findings if measures else {}).values()), 0, True,
                         measures=measures)  # fmt: skip
    return CycleOutcome("test", at, 0.25, cfg, True, result if ok else None,
                        None if ok else "ipam.db: damaged")  # fmt: skip


def exposition(path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with open(path) as file:
        text = file.read()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_survive_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = reporter(tmp_path, cfg)
    first.started()
    did = CycleMeasures(released={"leaked": 2}, refused={"now-live": 1}, lock_hold_seconds=0.0007)
    first.cycle_finished(outcome(cfg, did))
    first.cycle_finished(outcome(cfg, CycleMeasures(released={"stale": 1})))
    first.stopped()
    assert stat_mode(tmp_path / "lib" / "ipamguard" / "counters.json") == 0o600

    second = reporter(tmp_path, cfg)  # a new process: counters from the file
    second.started()
    second.cycle_finished(outcome(cfg, CycleMeasures(released={"leaked": 1})))
    got = exposition(cfg.metrics.textfile or "")
    assert got[("ipamguard_releases_total", (("kind", "leaked"),))] == 3
    assert got[("ipamguard_releases_total", (("kind", "stale"),))] == 1
    assert got[("ipamguard_releases_total", (("kind", "orphan-network"),))] == 0
    assert got[("ipamguard_repair_refusals_total", (("reason", "now-live"),))] == 1
    for reason in REFUSAL_REASONS:  # every reason from the start: rate() needs a 0
        assert ("ipamguard_repair_refusals_total", (("reason", reason),)) in got
    assert got[("ipamguard_db_lock_hold_seconds", ())] == 0.0007  # the last write's


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_damaged_counters_file_starts_again_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "ipamguard" / "counters.json"
    path.parent.mkdir(parents=True)
    for text in ("{", "[]", '{"version": 1, "releases": {"leaked": -1}}',
                 '{"version": 2}', '{"version": 1, "releases": {"leaked": "x"}}'):  # fmt: skip
        path.write_text(text)
        counters, problem = load_counters(str(path))
        assert problem is not None and problem.startswith(str(path))
        assert counters.releases == {}
    with capture_logs() as logs:
        fresh = reporter(tmp_path)
    assert fresh.counters.releases["leaked"] == 0
    assert any(e["event"] == "counters start again from 0" for e in logs)


def test_the_status_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    report = reporter(tmp_path, cfg)
    report.started()
    state = read_state(report.state_path)
    assert state is not None
    assert state["running"] and state["last_cycle"] is None and state["cycles"] == 0
    assert state["pid"] == os.getpid() and state["pid_start"] == process_start(os.getpid())
    assert stat_mode(Path(report.state_path)) == 0o644  # status needs no privileges
    assert stat_mode(Path(report.state_path).parent) == 0o755
    low = dataclasses.replace(SUBNET, allocated=250)
    measures = CycleMeasures(
        findings={("netavark", "a", "leaked"): 1}, networks=(("netavark", "a"),),
        subnets=(low,), released={"leaked": 1},
    )  # fmt: skip
    report.cycle_finished(outcome(cfg, measures, at=2000.0))
    state = read_state(report.state_path)
    assert state is not None
    last = state["last_cycle"]
    assert (last["ok"], last["reason"], last["seconds"]) == (True, "test", 0.25)
    assert (last["finished_at"], state["last_success_at"]) == (2000.25, 2000.25)
    assert last["findings"] == {"leaked": 1} and last["released"] == {"leaked": 1}
    assert [s["subnet"] for s in state["low_subnets"]] == ["10.1.0.0/24"]
    assert state["metrics"]["textfile"] == cfg.metrics.textfile
    assert state["metrics"]["error"] is None and state["metrics"]["written_at"]
    assert state["counters"]["releases"]["leaked"] == 1
    assert state["config"] == "/etc/ipamguard/ipamguard.toml"

    report.cycle_finished(outcome(cfg, ok=False, at=3000.0))  # a failed reconcile
    state = read_state(report.state_path)
    assert state is not None
    assert state["last_cycle"]["ok"] is False and state["last_cycle"]["error"]
    assert state["last_success_at"] == 2000.25  # the last one that worked
    got = exposition(cfg.metrics.textfile or "")
    assert got[("ipamguard_last_cycle_success", ())] == 0
    assert got[("ipamguard_last_cycle_timestamp_seconds", ())] == 2000.25
    # what the last good reconcile measured stays visible
    assert got[("ipamguard_subnet_addresses_free", (("network", "a"),
                                                    ("subnet", "10.1.0.0/24")))] == 3  # fmt: skip

    report.podman_changed(False)
    assert exposition(cfg.metrics.textfile or "")[("ipamguard_podman_reachable", ())] == 0
    state = read_state(report.state_path)
    assert state is not None and state["podman_reachable"] is False
    report.stopped()
    state = read_state(report.state_path)
    assert state is not None and state["running"] is False


def test_findings_of_every_kind_per_network_zero_when_none(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    report = reporter(tmp_path, cfg)
    measures = CycleMeasures(
        findings={("netavark", "a", "leaked"): 2},
        networks=(("netavark", "a"), ("netavark", "b")),
    )
    report.cycle_finished(outcome(cfg, measures))
    got = exposition(cfg.metrics.textfile or "")
    findings = {dict(k[1])["network"] + "/" + dict(k[1])["kind"]: v for k, v in got.items()
                if k[0] == "ipamguard_findings"}  # fmt: skip
    assert len(findings) == 10  # 2 networks x 5 kinds
    assert findings["a/leaked"] == 2 and findings["b/leaked"] == 0 and findings["a/stale"] == 0


def test_an_unwritable_metrics_file_is_logged_once_and_shown(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        Config(), metrics=MetricsConfig(str(tmp_path / "missing" / "ipamguard.prom"))
    )
    report = reporter(tmp_path, cfg)
    with capture_logs() as logs:
        for _ in range(3):
            report.cycle_finished(outcome(cfg, CycleMeasures()))
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "missing" in errors[0]["error"]
    assert "textfile collector" in errors[0]["hint"]
    state = read_state(report.state_path)
    assert state is not None and "missing" in state["metrics"]["error"]
    (tmp_path / "missing").mkdir()
    with capture_logs() as logs:
        report.cycle_finished(outcome(cfg, CycleMeasures()))
    assert [e["event"] for e in logs] == ["the metrics file is written again"]
    state = read_state(report.state_path)
    assert state is not None and state["metrics"]["error"] is None


def test_no_metrics_file_unless_configured(tmp_path: Path) -> None:
    cfg = config(tmp_path, textfile=False)
    report = reporter(tmp_path, cfg)
    report.cycle_finished(outcome(cfg, CycleMeasures()))
    assert os.listdir(tmp_path / "prom") == []
    state = read_state(report.state_path)
    assert state is not None and state["metrics"] == {
        "textfile": None, "written_at": None, "error": None,
    }  # fmt: skip


# --------------------------------------------------------------------- capacity alerts


def test_a_subnet_crossing_the_threshold_is_alerted_once_each_way() -> None:
    watch = CapacityWatch()

    def run(allocated: int) -> list[dict[str, Any]]:
        with capture_logs() as logs:
            watch.run([dataclasses.replace(SUBNET, allocated=allocated)], 10.0)
        return logs

    assert run(200) == []  # 53 of 253 free
    (low,) = run(230)  # 23 free: 9.1 %
    assert low["message_id"] == messages.SUBNET_LOW and low["log_level"] == "warning"
    assert (low["network"], low["subnet"], low["free"], low["size"]) == ("a", "10.1.0.0/24",
                                                                         23, 253)  # fmt: skip
    assert low["threshold_percent"] == 10.0
    assert run(231) == [] and run(252) == []  # still under: nothing new
    (back,) = run(227)  # 26 free: 10.3 %
    assert back["message_id"] == messages.SUBNET_RECOVERED and back["free"] == 26
    assert run(220) == []
    assert len(run(240)) == 1
    with capture_logs() as logs:
        watch.run([], 10.0)  # the network was removed
    assert [e["message_id"] for e in logs] == [messages.SUBNET_RECOVERED]
    assert logs[0]["event"] == "subnet gone: a 10.1.0.0/24"
    with capture_logs() as logs:
        watch.run([dataclasses.replace(SUBNET, allocated=253)], 0.0)  # 0: never
    assert logs == []


# --------------------------------------------------------------------- measures


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("podman could not be asked right before the write: podman: timed out",
         "podman-unreachable"),
        ("now live: podman: running", "now-live"),
        ("now unknown: runtime state: unreadable", "liveness-unknown"),
        ("now torn-down: podman: exited", "verdict-changed"),
        ("already released meanwhile", "already-released"),
        ("already removed meanwhile", "already-released"),
        ("in use on the network (10.1.0.5 answers on network a: ARP reply)", "in-use-on-network"),
        ("0123456789ab is live: podman: running", "network-held"),
        ("not releasable: podman could not be asked", "not-releasable"),
        ("not confirmed yet (grace period)", "not-confirmed"),
        ("something new", "other"),
    ],
)  # fmt: skip
def test_refusal_reasons_are_short_categories(text: str, reason: str) -> None:
    assert refusal_reason(text) == reason
    assert reason in REFUSAL_REASONS


def finding(kind: str, network: str, ip: str | None, cid: str) -> Finding:
    subnet = "10.1.0.0/24" if ip else None
    return Finding(kind, network, subnet, ip, cid, 0.0, (), True, True)


def test_measure_counts_what_is_left_after_the_releases() -> None:
    state = IpamState(
        txid=1,
        networks=[
            Network("a", [Subnet("10.1.0.0/24", allocations=[
                Allocation("a", "10.1.0.0/24", f"10.1.0.{i}", f"c{i}") for i in range(2, 6)
            ])]),
            Network("gone", [Subnet("10.2.0.0/24", allocations=[
                Allocation("gone", "10.2.0.0/24", "10.2.0.2", "x")
            ])]),
        ],
    )  # fmt: skip
    leaked = [finding("leaked", "a", f"10.1.0.{i}", f"c{i}") for i in (2, 3)]
    orphan = finding("orphan-network", "gone", None, "")
    dangling = finding("dangling", "a", "10.1.0.5", "c5")
    outcomes = [
        RepairResult(released=[leaked[0], orphan], lock_hold=0.0004),
        RepairResult(refused=[(leaked[1], "now live: podman: running")]),
    ]
    gateways = {("a", "10.1.0.0/24"): "10.1.0.1"}
    m = measure([("netavark", state)], [*leaked, orphan, dangling], outcomes, gateways)
    assert m.findings == {("netavark", "a", "leaked"): 1, ("netavark", "a", "dangling"): 1}
    assert m.networks == (("netavark", "a"),)  # the orphaned network's bucket is gone
    (subnet,) = m.subnets
    assert (subnet.network, subnet.size, subnet.allocated, subnet.free) == ("a", 253, 3, 250)
    assert m.released == {"leaked": 1, "orphan-network": 1}
    assert m.refused == {"now-live": 1}
    assert m.lock_hold_seconds == 0.0004
    nothing = measure([("netavark", state)], [], [RepairResult()], {})
    assert nothing.lock_hold_seconds is None and nothing.released == {}


def test_neither_file_holds_container_ids_or_addresses(tmp_path: Path) -> None:
    cid = "36e1a6" + "f" * 58
    state = IpamState(1, [Network("a", [Subnet("10.1.0.0/24", allocations=[
        Allocation("a", "10.1.0.0/24", "10.1.0.77", cid)])])])  # fmt: skip
    cfg = config(tmp_path)
    report = reporter(tmp_path, cfg)
    measures = measure([("netavark", state)], [finding("leaked", "a", "10.1.0.77", cid)], [], {})
    report.cycle_finished(outcome(cfg, measures))
    text = json.dumps(read_state(report.state_path)) + Path(cfg.metrics.textfile or "").read_text()
    assert cid[:12] not in text and "10.1.0.77" not in text
    assert 'ipamguard_findings{kind="leaked",network="a",store="netavark"} 1.0' in text
