"""What the daemon's metrics and status file cost per reconcile.

    python3 bench/bench_metrics.py [--rounds 50]

For each layout it builds the IpamState a reconcile would have read (no bbolt:
reading ipam.db is the reconcile's cost, measured by bench_vs_go.py) and times
the additions of the metrics work, median of ``--rounds``:

- measure: counts per network, subnet, kind (``ipamguard.daemon.measures``);
- report:  the reporter after the reconcile: the textfile rendered by
           prometheus_client and replaced atomically, the status file too
           (``Reporter.cycle_finished``, on a tmpfs and on the disk of /var/tmp).

Layouts: 1,000 and 65,000 allocations in one subnet, 65,000 spread over 256
networks of one /24 each, and 65,000 that are all leaked (the worst case of the
per-finding counting).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from ipamguard.config import Config, MetricsConfig
from ipamguard.daemon.cycle_api import CycleOutcome, CycleResult
from ipamguard.daemon.measures import measure
from ipamguard.daemon.reporter import Reporter
from ipamguard.ipam.model import Allocation, IpamState, Network, Subnet
from ipamguard.reconcile import Finding


def state(count: int, networks: int) -> IpamState:
    per = count // networks
    nets = []
    for n in range(networks):
        name = f"net{n}"
        cidr = "10.88.0.0/16" if networks == 1 else f"10.{n // 256}.{n % 256}.0/24"
        base = cidr.split("/")[0].split(".")
        allocations = []
        for i in range(per):
            host = i + 2
            ip = (
                f"{base[0]}.{base[1]}.{host // 256}.{host % 256}"
                if networks == 1
                else (f"{base[0]}.{base[1]}.{base[2]}.{host}")
            )
            allocations.append(Allocation(name, cidr, ip, f"{n:08x}{i:056x}"))
        nets.append(Network(name, [Subnet(cidr, allocations=allocations)]))
    return IpamState(1, nets)


def median_ms(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench(label: str, ipam: IpamState, leaked: bool, directory: str, rounds: int) -> None:
    findings = [
        Finding("leaked", a.network, a.subnet, a.ip, a.container_id, 0.0, (), True)
        for a in ipam.allocations()
    ] if leaked else []  # fmt: skip
    measured = measure([("netavark", ipam)], findings, [], {})
    config = dataclasses.replace(Config(), metrics=MetricsConfig(f"{directory}/ipamguard.prom"))
    reporter = Reporter(
        config, state_path=f"{directory}/run/state.json", counters_path=f"{directory}/c.json"
    )
    result = CycleResult(len(ipam.networks), len(ipam.allocations()), len(findings), 0, True,
                         measures=measured)  # fmt: skip
    outcome = CycleOutcome("bench", time.time(), 0.1, config, True, result)
    m = median_ms(lambda: measure([("netavark", ipam)], findings, [], {}), rounds)
    r = median_ms(lambda: reporter.cycle_finished(outcome), rounds)
    size = os.path.getsize(f"{directory}/ipamguard.prom")
    print(f"{label:<44} measure {m:7.2f} ms   report {r:6.2f} ms   textfile {size:>7} B")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    layouts = [
        ("1,000 allocations, 1 subnet", state(1000, 1), False),
        ("65,000 allocations, 1 subnet", state(65000, 1), False),
        ("65,000 allocations, 256 networks", state(65000, 256), False),
        ("65,000 allocations, 1 subnet, all leaked", state(65000, 1), True),
    ]
    for where in ("/dev/shm", "/var/tmp"):
        print(f"-- files in {where}")
        for label, ipam, leaked in layouts:
            with tempfile.TemporaryDirectory(dir=where) as directory:
                bench(label, ipam, leaked, directory, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
