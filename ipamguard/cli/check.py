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
        epilog="Exit codes: 0 clean, 1 findings, 2 could not check (e.g. podman could not "
        "be asked: findings are then shown as not releasable).",
    )
    add_db_option(parser)
    add_liveness_options(parser)
    add_json_option(parser)
    add_timeout_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.cli.common import (
        context_from,
        finding_to_json,
        finding_to_text,
        liveness_used,
        print_json,
    )
    from ipamguard.healing import judge, observe

    ctx = context_from(args)
    results = []
    for store in ctx.stores():
        observation = observe(ctx, store)
        results.append((store, observation, judge(observation, {}, grace=0.0)))
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
            }
        )
    else:
        for finding in findings:
            print(finding_to_text(finding))
        print(
            f"{networks} network(s), {allocations} allocation(s), "
            f"{len(findings)} finding(s); asked {liveness_used(ctx)}",
            file=sys.stderr,
        )
    if failures:
        print(
            "ipamguard: error: could not ask every liveness source: " + "; ".join(failures),
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_NOTHING if findings else EXIT_OK
