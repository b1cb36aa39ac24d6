"""The metrics textfile: Prometheus' text format as its own parser reads it, written
atomically (a reader never sees a part), readable by node_exporter whatever the umask."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipamguard import metrics
from ipamguard.metrics import MetricsSnapshot, render, write_textfile
from ipamguard.state import write_atomically

EVERY_METRIC = {
    "ipamguard_findings": "gauge",
    "ipamguard_allocations": "gauge",
    "ipamguard_subnet_addresses": "gauge",
    "ipamguard_subnet_addresses_free": "gauge",
    "ipamguard_releases_total": "counter",
    "ipamguard_repair_refusals_total": "counter",
    "ipamguard_cycle_duration_seconds": "gauge",
    "ipamguard_last_cycle_timestamp_seconds": "gauge",
    "ipamguard_last_cycle_success": "gauge",
    "ipamguard_podman_reachable": "gauge",
    "ipamguard_repair_enabled": "gauge",
    "ipamguard_resync_seconds": "gauge",
    "ipamguard_db_lock_hold_seconds": "gauge",
    "ipamguard_networkd_conflicts": "gauge",
    "ipamguard_link_problems": "gauge",
    "ipamguard_build_info": "gauge",
}


def snapshot(**changes: object) -> MetricsSnapshot:
    values: dict[str, object] = {
        "version": "0.1.0",
        "podman_reachable": True,
        "repair_enabled": False,
        "resync_seconds": 300.0,
        "findings": {("netavark", "a", "leaked"): 2, ("netavark", "a", "stale"): 0},
        "allocations": {("a", "10.1.0.0/24"): 240},
        "subnet_addresses": {("a", "10.1.0.0/24"): 253},
        "subnet_free": {("a", "10.1.0.0/24"): 13},
        "releases": {"leaked": 3.0, "stale": 0.0},
        "refusals": {"in-use-on-network": 1.0},
        "cycle_seconds": 0.042,
        "last_cycle_timestamp": 1_800_000_000.5,
        "last_cycle_success": True,
        "lock_hold_seconds": 0.00055,
        "networkd_conflicts": 1,
        "link_problems": 2,
    }
    values.update(changes)
    return MetricsSnapshot(**values)  # type: ignore[arg-type]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_metric_has_help_type_and_its_value() -> None:
    text = render(snapshot()).decode()
    for name, kind in EVERY_METRIC.items():
        assert f"\n# HELP {name} " in "\n" + text, name
        assert f"\n# TYPE {name} {kind}\n" in "\n" + text, name
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["ipamguard_releases"].type == "counter"
    assert families["ipamguard_findings"].documentation.startswith("Open findings")
    got = samples(text)
    assert got[("ipamguard_findings", (("kind", "leaked"), ("network", "a"),
                                       ("store", "netavark")))] == 2  # fmt: skip
    assert got[("ipamguard_findings", (("kind", "stale"), ("network", "a"),
                                       ("store", "netavark")))] == 0  # fmt: skip
    subnet = (("network", "a"), ("subnet", "10.1.0.0/24"))
    assert got[("ipamguard_allocations", subnet)] == 240
    assert got[("ipamguard_subnet_addresses", subnet)] == 253
    assert got[("ipamguard_subnet_addresses_free", subnet)] == 13
    assert got[("ipamguard_releases_total", (("kind", "leaked"),))] == 3
    assert got[("ipamguard_repair_refusals_total", (("reason", "in-use-on-network"),))] == 1
    assert got[("ipamguard_cycle_duration_seconds", ())] == 0.042
    assert got[("ipamguard_last_cycle_timestamp_seconds", ())] == 1_800_000_000.5
    assert got[("ipamguard_last_cycle_success", ())] == 1
    assert got[("ipamguard_podman_reachable", ())] == 1
    assert got[("ipamguard_repair_enabled", ())] == 0
    assert got[("ipamguard_resync_seconds", ())] == 300
    assert got[("ipamguard_db_lock_hold_seconds", ())] == 0.00055
    assert got[("ipamguard_networkd_conflicts", ())] == 1
    assert got[("ipamguard_link_problems", ())] == 2
    assert got[("ipamguard_build_info", (("version", "0.1.0"),))] == 1
    # no _created series: counters restored from a file have no meaningful creation time
    assert not any(name.endswith("_created") for name, _ in got)


def test_unknown_values_have_no_sample_but_keep_help_and_type() -> None:
    text = render(
        snapshot(
            cycle_seconds=None, last_cycle_timestamp=None, last_cycle_success=None,
            lock_hold_seconds=None, networkd_conflicts=None, link_problems=None,
            findings={}, allocations={}, subnet_addresses={}, subnet_free={},
        )
    ).decode()  # fmt: skip
    for name in EVERY_METRIC:
        assert f"# TYPE {name} " in text
    got = samples(text)
    assert ("ipamguard_cycle_duration_seconds", ()) not in got
    assert ("ipamguard_networkd_conflicts", ()) not in got
    assert got[("ipamguard_podman_reachable", ())] == 1


def test_label_values_are_escaped() -> None:
    odd = 'net"with\\odd\nname'
    got = samples(render(snapshot(findings={("netavark", odd, "leaked"): 1})).decode())
    assert got[("ipamguard_findings", (("kind", "leaked"), ("network", odd),
                                       ("store", "netavark")))] == 1  # fmt: skip


def generate_latest(snapshot: MetricsSnapshot) -> bytes:
    """What prometheus_client writes for the same metrics (the oracle)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import generate_latest as prometheus_generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            for family in metrics._families(snapshot):
                kind = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                made = kind(family.name, family.help, labels=list(family.labels))
                for values, value in family.samples:
                    made.add_metric(list(values), value)
                yield made

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return prometheus_generate_latest(registry)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"findings": {("netavark", 'net"with\\odd\nname ü', "leaked"): 1}},
        {"cycle_seconds": None, "networkd_conflicts": None, "findings": {}},
        {"last_cycle_timestamp": 1_764_400_000.123456, "cycle_seconds": 12345678.9},
        {"resync_seconds": float("inf"), "lock_hold_seconds": float("nan"),
         "releases": {"leaked": 1e21, "stale": 1e-7}, "refusals": {"x\\y": -2.5}},
        {"version": "0.1.0+local\n\"quoted\"", "subnet_free": {("a", "fd00::/64"): 2**64}},
    ],
)  # fmt: skip
def test_the_text_is_byte_for_byte_prometheus_clients(changes: dict[str, Any]) -> None:
    mine = render(snapshot(**changes))
    assert mine == generate_latest(snapshot(**changes))
    assert samples(mine.decode())  # and its parser reads it


def test_the_file_is_readable_by_node_exporter_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "ipamguard.prom"
    old = os.umask(0o077)  # the unit's UMask=
    try:
        write_textfile(str(path), snapshot())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == render(snapshot())
    assert os.listdir(tmp_path) == ["ipamguard.prom"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ipamguard.prom"
    write_textfile(str(path), snapshot())
    before = path.read_bytes()

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        write_textfile(str(path), snapshot(releases={"leaked": 9.0}))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ipamguard.prom"]
    with pytest.raises(OSError):
        write_textfile(str(tmp_path / "missing" / "x.prom"), snapshot())


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    """A writer replaces the file as fast as it can while a reader reads it in a loop:
    every read is a complete exposition (its last metric present, parsing cleanly)."""
    path = tmp_path / "ipamguard.prom"
    big = {("n", f"10.{i // 256}.{i % 256}.0/24"): i for i in range(2000)}  # ~150 kB
    versions = [render(snapshot(allocations=big, releases={"leaked": float(n)})) for n in range(4)]
    write_atomically(str(path), versions[0], metrics.TEXTFILE_MODE)
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            write_atomically(str(path), versions[writes % 4], metrics.TEXTFILE_MODE)
            writes += 1

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        while reads < 300 or writes < 50:
            data = path.read_bytes()
            assert data in versions, f"a partial or mixed file of {len(data)} bytes"
            reads += 1
    finally:
        stop.set()
        thread.join()
    parsed = list(text_string_to_metric_families(path.read_text()))
    assert parsed[-1].name == "ipamguard_build_info"
    assert [n for n in os.listdir(tmp_path)] == ["ipamguard.prom"]
