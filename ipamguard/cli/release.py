"""``ipamguard release``: remove every allocation of one container."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ipamguard.cli.common import (
    add_backup_options,
    add_db_option,
    add_json_option,
    add_liveness_options,
    add_timeout_option,
)
from ipamguard.errors import EXIT_NOTHING, EXIT_OK, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "release",
        help="release every allocation of a container",
        description="Remove a container's allocations from ipam.db: its IP key in every "
        "subnet bucket and its ids entry, in one write transaction, under podman's "
        "network lock and then bbolt's file lock (held for milliseconds).",
        epilog="Without --force, podman's API, runtime state and conmon are asked first: "
        "a container that lives, or whose fate nobody can tell, is refused. --force "
        "skips that (offline copies, rescue). A backup of the file is saved first. "
        "Exit codes: 0 released, 1 nothing to release / not found, 2 error.",
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
    from ipamguard.cli.common import confirm, paths_for
    from ipamguard.ipam.release import ReleasePlan, release_container

    def ask(plan: ReleasePlan) -> None:
        _print_plan(plan, "will release", sys.stderr)
        confirm(f"Release {len(plan.allocations)} allocation(s)?", assume_yes=False)

    if args.json and not args.yes and not args.dry_run:
        raise UsageError("--json needs --yes (or --dry-run): there is no prompt in JSON mode")
    paths = paths_for(args)
    result = release_container(
        paths.db,
        args.container,
        args.network,
        dry_run=args.dry_run,
        lock_paths=paths.network_locks,
        timeout=args.lock_timeout,
        confirm=None if args.yes else ask,
        vouch=None if args.force else _vouch_for(args),
        backup=_backup_to(args),
    )
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
            }
        )
    elif plan.is_empty():
        print(f"nothing to release for container {plan.container_id}", file=sys.stderr)
    elif args.dry_run:
        _print_plan(plan, "would release", sys.stdout)
    else:
        _print_plan(plan, "released", sys.stdout)
        print(
            f"done: txid {result.txid}, db lock held {result.lock_hold * 1000:.1f} ms, "
            f"backup {result.backup}",
            file=sys.stderr,
        )
    return EXIT_NOTHING if plan.is_empty() else EXIT_OK


def _vouch_for(args: argparse.Namespace) -> Callable[[str], None]:
    from ipamguard.cli.common import liveness_sources
    from ipamguard.errors import Refused
    from ipamguard.kinds import STOPPED_STATES
    from ipamguard.liveness import collect

    def vouch(container_id: str) -> None:
        api, runtime = liveness_sources(args)
        seen = collect([*api, *runtime])
        info = seen.containers.get(container_id)
        if info is not None and info.state not in STOPPED_STATES:
            evidence = "; ".join(seen.evidence(container_id))
            raise Refused(f"container {container_id[:12]} is alive ({evidence}); not released")
        if info is None and not seen.complete:
            raise Refused(
                f"cannot tell whether container {container_id[:12]} lives ("
                + "; ".join(seen.failures)
                + "); not released (--force releases anyway)"
            )

    return vouch


def _backup_to(args: argparse.Namespace) -> Callable[[Any], str]:
    from ipamguard.backups import write_backup
    from ipamguard.cli.common import paths_for

    def backup(tx: Any) -> str:
        return write_backup(
            tx.snapshot.data,
            tx.snapshot.meta.txid,
            paths_for(args).backup_dir,
            args.backups_keep,
        )

    return backup


def _print_plan(plan: Any, verb: str, stream: Any) -> None:
    for a in plan.allocations:
        print(f"{verb} {a.ip} ({a.network}, {a.subnet}) of {plan.container_id}", file=stream)
    for e in plan.ids_entries:
        ips = " ".join(e.ips) or "-"
        print(f"{verb} ids entry of {plan.container_id} in {e.network} ({ips})", file=stream)
