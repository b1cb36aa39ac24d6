"""``ipamguard check``: report every allocation that no live container holds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ipamguard.cli.common import (
    add_db_option,
    add_json_option,
    add_liveness_options,
    add_timeout_option,
)
from ipamguard.errors import EXIT_ERROR, EXIT_NOTHING, EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="report leaked, stale and inconsistent allocations",
        description="Read ipam.db, then ask podman (its API socket, or the podman command "
        "when there is no socket), runtime state (runc/crun) and conmon which "
        "containers exist, and report every finding: leaked (no container has this "
        "ID), stale (the container exited and podman tore its network down, yet it "
        "still holds addresses), dangling (IP keys and ids entries disagree), "
        "orphan-network (no network config any more), malformed (netavark could not "
        "have written it). Changes nothing.",
        epilog="Also reports every subnet with fewer free addresses than "
        "--subnet-free-percent (podman hands out all but the network address, the IPv4 "
        "broadcast address and the gateway). Exit codes: 0 clean, 1 findings or a subnet "
        "low on addresses, 2 could not check (e.g. podman could not be asked: findings "
        "are then shown as not releasable).",
    )
    add_db_option(parser)
    add_liveness_options(parser)
    add_json_option(parser)
    add_timeout_option(parser)
    parser.add_argument(
        "--subnet-free-percent",
        type=float,
        metavar="PERCENT",
        help="report subnets with less free (default: [alerts] subnet_free_percent of "
        "ipamguard.toml, else 10; 0: never)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.capacity import read_gateways, subnet_capacities
    from ipamguard.cli.common import (
        context_from,
        finding_to_json,
        finding_to_text,
        liveness_used,
        print_json,
    )
    from ipamguard.healing import judge, observe

    percent = _free_percent(args)
    ctx = context_from(args)
    results = []
    for store in ctx.stores():
        observation = observe(ctx, store)
        results.append((store, observation, judge(observation, {}, grace=0.0)))
    gateways = read_gateways(ctx.paths.network_dir)
    subnets = [c for s, o, _ in results for c in subnet_capacities(o.state, gateways, s.kind)]
    low = [c for c in subnets if c.is_low(percent)]
    findings = [f for _, _, r in results for f in r.findings]
    failures = list(dict.fromkeys(f for _, _, r in results for f in r.liveness_failures))
    networks = sum(r.networks for _, _, r in results)
    allocations = sum(r.allocations for _, _, r in results)
    if args.json:
        print_json(
            {
                "db": ctx.paths.db,
                "txid": results[0][1].state.txid,
                "stores": [
                    {
                        "kind": s.kind,
                        "location": s.location,
                        "networks": r.networks,
                        "allocations": r.allocations,
                    }
                    for s, _, r in results
                ],
                "networks": networks,
                "allocations": allocations,
                "liveness": {
                    "complete": not failures,
                    "failures": failures,
                    "podman": liveness_used(ctx),
                },
                "findings": [finding_to_json(f) for f in findings],
                "subnet_free_percent": percent,
                "subnets": [c.to_dict(percent) for c in subnets],
            }
        )
    else:
        for finding in findings:
            print(finding_to_text(finding))
        for capacity in low:
            print(f"low on addresses: {capacity.describe()}")
        print(
            f"{networks} network(s), {allocations} allocation(s), "
            f"{len(findings)} finding(s), {len(low)} subnet(s) low on addresses; "
            f"asked {liveness_used(ctx)}",
            file=sys.stderr,
        )
    if failures:
        print(
            "ipamguard: error: could not ask every liveness source: " + "; ".join(failures),
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_NOTHING if findings or low else EXIT_OK


def _free_percent(args: argparse.Namespace) -> float:
    """--subnet-free-percent, else the configuration file's [alerts] value."""
    import os

    from ipamguard.config import load_config
    from ipamguard.errors import UsageError

    if args.subnet_free_percent is not None:
        if not 0 <= args.subnet_free_percent <= 100:
            raise UsageError("--subnet-free-percent: expected a percentage between 0 and 100")
        percent: float = args.subnet_free_percent
        return percent
    user = args.user if args.user is not None else os.geteuid() != 0
    return load_config(None, user).alerts.subnet_free_percent
