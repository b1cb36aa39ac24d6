"""``ipamguard backups``: the copies of ipam.db taken before each write."""

from __future__ import annotations

import argparse
from typing import Any

from ipamguard.cli.common import add_backup_dir_option, add_json_option
from ipamguard.errors import EXIT_NOTHING, EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backups",
        help="list the backups of ipam.db",
        description="List the copies of ipam.db that ipamguard saved before each write, "
        "oldest first. Put one back with `ipamguard restore FILE`.",
        epilog="Exit codes: 0 listed, 1 no backups, 2 error.",
    )
    add_backup_dir_option(parser)
    parser.add_argument(
        "--user",
        action="store_true",
        default=None,
        help="rootless: the calling user's backups (the default when not run as root)",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.backups import list_backups
    from ipamguard.cli.common import context_from, print_json

    backup_dir = context_from(args).paths.backup_dir
    backups = list_backups(backup_dir)
    if args.json:
        print_json(
            [
                {
                    "path": b.path,
                    "taken": b.taken,
                    "kind": b.kind,
                    "store": b.store,
                    "txid": b.txid,
                    "size": b.size,
                }
                for b in backups
            ]
        )
    else:
        for b in backups:
            what = f"txid {b.txid}" if b.kind == "copy" else f"{b.store} release record"
            print(f"{b.path}  {b.taken}  {what}  {b.size} bytes")
        if not backups:
            print(f"no backups in {backup_dir}")
    return EXIT_OK if backups else EXIT_NOTHING
