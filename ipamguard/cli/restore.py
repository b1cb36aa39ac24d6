"""``ipamguard restore``: put a backup back, safely (ipam.db, or CNI's files)."""

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
)
from ipamguard.errors import EXIT_NOTHING, EXIT_OK, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="put a backup of ipam.db back",
        description="Validate a backup in full, compare it with the live file and the "
        "containers that live now, then rewrite ipam.db with the backup's content "
        "in one write transaction under podman's locks (the file is not replaced, "
        "so podman keeps working with it), only if the live file is still the one "
        "compared (else: run again). The live file is backed up first. Refuses when "
        "it would take an address from a live container, or free one that answers "
        "on its network, unless --force.",
        epilog="Exit codes: 0 restored (or --dry-run shows changes), 1 nothing differs, 2 error.",
    )
    parser.add_argument(
        "backup",
        metavar="FILE",
        help="a backup (see `ipamguard backups`): a release record puts back exactly what "
        "one release removed; a full copy rewrites the whole file",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    parser.add_argument(
        "--force", action="store_true", help="restore even over live containers' addresses"
    )
    parser.add_argument(
        "--other-file",
        action="store_true",
        help="restore a backup that was taken of another file than --db",
    )
    add_db_option(parser)
    add_liveness_options(parser)
    add_backup_options(parser)
    add_json_option(parser)
    add_timeout_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.cli.common import confirm, context_from, print_json
    from ipamguard.ipam.report import allocation_to_json
    from ipamguard.restore import RestorePlan, restore

    if args.json and not (args.yes or args.dry_run):
        raise UsageError("--json needs --yes (or --dry-run): there is no prompt in JSON mode")
    ctx = context_from(args)
    store = _store_of(ctx, args.backup)

    def ask(plan: RestorePlan) -> None:
        _print_changes(plan, sys.stderr)
        if plan.kind == "record":
            question = f"Put back into {store.location} what {args.backup} holds?"
        else:
            question = f"Rewrite {store.location} with the content of {args.backup}?"
        confirm(question, assume_yes=False)

    plan = restore(
        ctx, store, args.backup, force=args.force, dry_run=args.dry_run,
        confirm=None if args.yes else ask, prober=ctx.prober(), other_file=args.other_file,
    )  # fmt: skip
    if args.json:
        print_json(
            {
                "backup": plan.backup,
                "dry_run": args.dry_run,
                "written": plan.written,
                "added": [allocation_to_json(a) for a in plan.added],
                "removed": [allocation_to_json(a) for a in plan.removed],
                "conflicts": plan.conflicts,
                "safety_backup": plan.safety_backup,
                "notes": plan.notes,
            }
        )
    else:
        _print_changes(plan, sys.stdout)
        for conflict in plan.conflicts:
            print(f"conflict: {conflict}", file=sys.stderr)
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        if plan.safety_backup:
            print(f"the file before the restore: {plan.safety_backup}", file=sys.stderr)
    return EXIT_OK if plan.added or plan.removed else EXIT_NOTHING


def _store_of(ctx: Any, backup: str) -> Any:
    """The store a backup belongs to: a release record names it (netavark's ipam.db or
    CNI's files); a full copy is always of ipam.db."""
    from ipamguard.backups import is_record, read_record

    if is_record(backup):
        return ctx.store(read_record(backup)["store"])
    return ctx.store("netavark")


def _print_changes(plan: Any, stream: Any) -> None:
    for a in plan.added:
        print(f"+ {a.ip} ({a.network}, {a.subnet}) {a.container_id}", file=stream)
    for a in plan.removed:
        print(f"- {a.ip} ({a.network}, {a.subnet}) {a.container_id}", file=stream)
