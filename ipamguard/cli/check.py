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
        store_of,
    )
    from ipamguard.healing import judge, observe

    ctx = context_from(args)
    observation = observe(ctx, store_of(ctx))
    result = judge(observation, {}, grace=0.0)
    if args.json:
        print_json(
            {
                "db": ctx.paths.db,
                "txid": observation.state.txid,
                "networks": result.networks,
                "allocations": result.allocations,
                "liveness": {
                    "complete": result.liveness_complete,
                    "failures": list(result.liveness_failures),
                    "podman": liveness_used(ctx),
                },
                "findings": [finding_to_json(f) for f in result.findings],
            }
        )
    else:
        for finding in result.findings:
            print(finding_to_text(finding))
        print(
            f"{result.networks} network(s), {result.allocations} allocation(s), "
            f"{len(result.findings)} finding(s); asked {liveness_used(ctx)}",
            file=sys.stderr,
        )
    if not result.liveness_complete:
        print(
            "ipamguard: error: could not ask every liveness source: "
            + "; ".join(result.liveness_failures),
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_NOTHING if result.findings else EXIT_OK
