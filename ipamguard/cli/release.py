"""``ipamguard release``: remove every allocation of one container."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ipamguard.cli.common import (
    add_backup_options,
    add_db_option,
    add_json_option,
    add_liveness_options,
    add_timeout_option,
    confirm,
)
from ipamguard.errors import EXIT_NOTHING, EXIT_OK, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "release",
        help="release every allocation of a container",
        description="Remove a container's allocations from ipam.db: its IP key in every "
        "subnet bucket and its ids entry, in one write transaction, under podman's "
        "network lock and then bbolt's file lock (held for milliseconds).",
        epilog="Without --force, podman, runtime state and conmon are asked first: a "
        "container that lives (an exited one whose network podman did not tear down "
        "lives too), or whose fate nobody can tell, is refused; under the locks the "
        "file must be the one read, and each address is probed on its network's "
        "bridge (an answer: refused). --force skips liveness and probing (offline "
        "copies, rescue), never the locks or the check that the file is unchanged. "
        "A backup of the file is saved first. Exit codes: 0 released, 1 nothing to "
        "release / not found, 2 error or refused.",
    )
    parser.add_argument(
        "--container", required=True, metavar="ID", help="container ID or unique prefix"
    )
    parser.add_argument("--network", metavar="NAME", help="only in this network")
    add_db_option(parser)
    add_liveness_options(parser)
    add_backup_options(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="do not ask podman whether the container lives (you vouch that it does not)",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed")
    add_json_option(parser)
    add_timeout_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.cli.common import context_from
    from ipamguard.errors import Changed
    from ipamguard.ipam.release import ReleasePlan
    from ipamguard.manual import release_container

    def ask(plan: ReleasePlan) -> None:
        _print_plan(plan, "will release", sys.stderr)
        confirm(f"Release {len(plan.allocations)} allocation(s)?", assume_yes=False)

    if args.json and not args.yes and not args.dry_run:
        raise UsageError("--json needs --yes (or --dry-run): there is no prompt in JSON mode")
    ctx = context_from(args)
    store = _holding_store(ctx, args)
    attempts = 3 if args.yes else 1  # a changed file after a prompt: ask the operator again
    for attempt in range(attempts):
        try:
            result = release_container(
                ctx, store, args.container, args.network, dry_run=args.dry_run,
                force=args.force, confirm=None if args.yes else ask, prober=ctx.prober(),
            )  # fmt: skip
            break
        except Changed as changed:
            if attempt == attempts - 1:
                raise Changed(f"{changed} (run the command again)") from None
    plan = result.plan
    if args.json:
        from ipamguard.cli.common import print_json
        from ipamguard.ipam.report import allocation_to_json

        print_json(
            {
                "container_id": plan.container_id,
                "dry_run": args.dry_run,
                "written": result.written,
                "txid": result.txid,
                "allocations": [allocation_to_json(a) for a in plan.allocations],
                "ids_entries": [
                    {"network": e.network, "ips": list(e.ips)} for e in plan.ids_entries
                ],
                "lock_hold_ms": round(result.lock_hold * 1000, 3),
                "backup": result.backup,
                "notes": list(result.notes),
            }
        )
    elif plan.is_empty():
        print(f"nothing to release for container {plan.container_id}", file=sys.stderr)
    elif args.dry_run:
        _print_plan(plan, "would release", sys.stdout)
    else:
        _print_plan(plan, "released", sys.stdout)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"done: txid {result.txid}, db lock held {result.lock_hold * 1000:.1f} ms, "
            f"backup {result.backup}",
            file=sys.stderr,
        )
    return EXIT_NOTHING if plan.is_empty() else EXIT_OK


def _holding_store(ctx: Any, args: argparse.Namespace) -> Any:
    """The first allocation store that has the container (NotFound from the last)."""
    from ipamguard.errors import NotFound

    stores = ctx.stores()
    for store in stores[:-1]:
        try:
            store.find(args.container, args.network)
        except NotFound:
            continue
        return store
    return stores[-1]


def _print_plan(plan: Any, verb: str, stream: Any) -> None:
    for a in plan.allocations:
        print(f"{verb} {a.ip} ({a.network}, {a.subnet}) of {plan.container_id}", file=stream)
    for e in plan.ids_entries:
        ips = " ".join(e.ips) or "-"
        print(f"{verb} ids entry of {plan.container_id} in {e.network} ({ips})", file=stream)
