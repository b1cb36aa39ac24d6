"""packaging/ipamguard.rules.yml: valid for promtool, firing as documented on series
like the daemon's, and naming only metrics that the daemon writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pkgtools import REPO, require_tools, run
from prometheus_client.parser import text_string_to_metric_families

from ipamguard.capacity import SubnetCapacity
from ipamguard.config import Config
from ipamguard.daemon.cycle_api import CycleMeasures, CycleOutcome, CycleResult
from ipamguard.daemon.reporter import Reporter
from ipamguard.metrics import render

RULES = REPO / "packaging" / "ipamguard.rules.yml"
HOST = 'instance="h1",job="node"'


def test_the_rules_name_only_metrics_the_daemon_writes(tmp_path: Path) -> None:
    report = Reporter(
        Config(),
        state_path=str(tmp_path / "state.json"),
        counters_path=str(tmp_path / "counters.json"),
    )
    measures = CycleMeasures(
        findings={("netavark", "a", "leaked"): 1},
        networks=(("netavark", "a"),),
        subnets=(SubnetCapacity("netavark", "a", "10.1.0.0/24", 253, 1, "10.1.0.1"),),
        networkd_conflicts=0,
        link_problems=0,
    )
    result = CycleResult(1, 1, 1, 0, True, measures=measures)
    report.cycle_finished(CycleOutcome("start", 1000.0, 0.1, Config(), True, result))
    text = render(report.snapshot()).decode()
    written = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    used = set(re.findall(r"\bipamguard_[a-z_]+", RULES.read_text()))
    assert used and used <= written, used - written
    assert "ipamguard_resync_seconds" in used  # "3 x resync" needs no copy of the config


@pytest.mark.packaging
def test_promtool_checks_the_rules() -> None:
    require_tools("promtool")
    result = run(["promtool", "check", "rules", RULES])
    assert "SUCCESS: 5 rules found" in result.stdout + result.stderr


def without_annotations(text: str) -> str:
    """The rules without their annotations (checked by `promtool check rules`): the
    unit test below compares labels only."""
    return re.sub(r"\n        annotations:\n(?:          .*\n|\n)*", "\n", text)


def alert(name: str, at: str, **labels: str) -> dict[str, Any]:
    expected = [{"exp_labels": labels}] if labels else []
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


@pytest.mark.packaging
def test_the_alerts_fire_when_documented(tmp_path: Path) -> None:
    require_tools("promtool")
    (tmp_path / "ipamguard.rules.yml").write_text(without_annotations(RULES.read_text()))
    leak = f'ipamguard_findings{{{HOST},store="netavark",network="a",kind="leaked"}}'
    dangling = f'ipamguard_findings{{{HOST},store="netavark",network="a",kind="dangling"}}'
    subnet = f'{HOST},network="a",subnet="10.1.0.0/24"'
    tests = {
        "rule_files": ["ipamguard.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": leak, "values": "1x30"},
                    {"series": dangling, "values": "1x30"},  # not a leak: no alert
                    {"series": f"ipamguard_subnet_addresses{{{subnet}}}", "values": "253x30"},
                    # 30 free (11.9 %) for 10 minutes, then 20 (7.9 %)
                    {"series": f"ipamguard_subnet_addresses_free{{{subnet}}}",
                     "values": "30x10 20x20"},
                    {"series": f"ipamguard_podman_reachable{{{HOST}}}", "values": "1x5 0x25"},
                    # the last reconcile at t=0, resync every 300 s: stale after 15 min
                    {"series": f"ipamguard_last_cycle_timestamp_seconds{{{HOST}}}",
                     "values": "0x30"},
                    {"series": f"ipamguard_resync_seconds{{{HOST}}}", "values": "300x30"},
                    {"series": f"ipamguard_networkd_conflicts{{{HOST}}}", "values": "0x10 1x20"},
                ],
                "alert_rule_test": [
                    alert("IpamguardLeakedAllocations", "14m"),
                    alert("IpamguardLeakedAllocations", "16m", severity="warning",
                          instance="h1", network="a", kind="leaked"),
                    alert("IpamguardSubnetAlmostFull", "12m"),
                    alert("IpamguardSubnetAlmostFull", "16m", severity="warning", instance="h1",
                          job="node", network="a", subnet="10.1.0.0/24"),
                    alert("IpamguardPodmanUnreachable", "14m"),
                    alert("IpamguardPodmanUnreachable", "16m", severity="warning",
                          instance="h1", job="node"),
                    alert("IpamguardNoReconcile", "14m"),
                    alert("IpamguardNoReconcile", "16m", severity="critical", instance="h1",
                          job="node"),
                    alert("IpamguardNetworkdConflict", "12m"),
                    alert("IpamguardNetworkdConflict", "16m", severity="warning",
                          instance="h1", job="node"),
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "tests.yml").write_text(json.dumps(tests))  # JSON is YAML
    result = run(["promtool", "test", "rules", "tests.yml"], cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
