"""Done when: a daemon with ``[metrics] textfile`` set shows a leak in ipamguard_findings
and each subnet's free addresses; once repair is switched on with SIGHUP, the release
shows in ipamguard_releases_total. A real podman (4.3 and 5.4), the real daemon, the
file read as node_exporter would (prometheus_client's parser); ``status`` and
``check --json`` agree with it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sandbox import Sandbox
from test_daemon_e2e import IP, NET, SUBNET, daemon, prepare, repair_config

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LEAKED = ("ipamguard_findings", (("kind", "leaked"), ("network", NET), ("store", "netavark")))
FREE = ("ipamguard_subnet_addresses_free", (("network", NET), ("subnet", SUBNET)))
SIZE = ("ipamguard_subnet_addresses", (("network", NET), ("subnet", SUBNET)))
ALLOCATED = ("ipamguard_allocations", (("network", NET), ("subnet", SUBNET)))
RELEASED = ("ipamguard_releases_total", (("kind", "leaked"),))


def read_samples(path: Path) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def wait_samples(path: Path, ready: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    deadline = time.monotonic() + timeout
    got: Samples = {}
    while time.monotonic() < deadline:
        if path.exists():
            got = read_samples(path)
            if ready(got):
                return got
        time.sleep(0.1)
    raise AssertionError(f"{path} never got there: {got}")


def metrics_config(prom: Path, repair: bool) -> str:
    return repair_config(repair) + f'[metrics]\ntextfile = "{prom}"\n'


def status(sb: Sandbox) -> tuple[int, dict[str, object]]:
    done = sb.ipamguard("status", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def test_metrics_show_a_leak_the_free_addresses_and_the_release(sandbox: Sandbox) -> None:
    prepare(sandbox)
    with tempfile.TemporaryDirectory(prefix="ipamguard-metrics-") as tmp:
        prom = Path(tmp) / "node-exporter" / "ipamguard.prom"
        prom.parent.mkdir()
        with daemon(sandbox, metrics_config(prom, repair=False)) as (proc, _notify, conf):
            first = wait_samples(prom, lambda s: s.get(("ipamguard_podman_reachable", ())) == 1)
            assert stat.S_IMODE(os.stat(prom).st_mode) == 0o644  # despite UMask=0077
            assert first[("ipamguard_repair_enabled", ())] == 0
            cid = sandbox.stage_leak("leaky", NET, IP)

            leak = wait_samples(prom, lambda s: s.get(LEAKED) == 1)
            # a /24 without network, broadcast and gateway address: 253, one held
            assert (leak[SIZE], leak[ALLOCATED], leak[FREE]) == (253, 1, 252)
            assert leak[RELEASED] == 0
            assert leak[("ipamguard_last_cycle_success", ())] == 1
            assert time.time() - leak[("ipamguard_last_cycle_timestamp_seconds", ())] < 30
            assert not any(cid[:12] in dict(labels).get("network", "") for _, labels in leak)

            code, report = status(sandbox)
            assert (code, report["status"]) == (1, "findings"), report
            state = report["state"]
            assert isinstance(state, dict) and state["metrics"]["textfile"] == str(prom)
            checked = json.loads(sandbox.ipamguard("check", "--json", check=False).stdout)
            (subnet,) = [s for s in checked["subnets"] if s["network"] == NET]
            assert (subnet["size"], subnet["allocated"], subnet["free"]) == (253, 1, 252)
            assert subnet["gateway"] == "172.19.10.1" and subnet["low"] is False

            conf.write_text(metrics_config(prom, repair=True))
            sandbox.signal(proc, signal.SIGHUP)
            done = wait_samples(prom, lambda s: s.get(RELEASED) == 1)
            assert done[("ipamguard_repair_enabled", ())] == 1
            done = wait_samples(prom, lambda s: s.get(LEAKED) == 0 and s.get(FREE) == 253)
            assert done[ALLOCATED] == 0
            assert done[("ipamguard_db_lock_hold_seconds", ())] > 0
            code, report = status(sandbox)
            assert (code, report["status"]) == (0, "healthy"), report
            assert sandbox.ipamguard("check", check=False).returncode == 0
            # a subnet under the threshold is worth exit 1 by itself: a live container
            # holds one address (252 of 253 free, under "100 %"), nothing else is found
            sandbox.podman("run", "-d", "--network", NET, "localhost/bb", "sleep", "600")
            low = sandbox.ipamguard("check", "--subnet-free-percent", "100", check=False)
            assert low.returncode == 1, low.stderr
            assert (
                low.stdout
                == f"low on addresses: {NET} {SUBNET}: 252 of 253 addresses free (99.6 %)\n"
            )
            assert proc.poll() is None
        assert proc.returncode == 0
        code, report = status(sandbox)
        assert (code, report["status"]) == (2, "not running")
        # the counter outlives the daemon: a new one starts from the file in /var/lib
        with daemon(sandbox, metrics_config(prom, repair=False)) as (proc, _notify, _conf):
            again = wait_samples(prom, lambda s: s.get(("ipamguard_repair_enabled", ())) == 0)
            assert again[RELEASED] == 1
