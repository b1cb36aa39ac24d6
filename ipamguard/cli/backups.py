"""``ipamguard backups``: the copies of ipam.db taken before each write."""

from __future__ import annotations

import argparse
from typing import Any

from ipamguard.cli.common import add_json_option
from ipamguard.errors import EXIT_NOTHING, EXIT_OK


def register(subparsers: Any) -> None:
    from ipamguard.ipam.paths import BACKUP_DIR

    parser = subparsers.add_parser(
        "backups",
        help="list the backups of ipam.db",
        description="List the copies of ipam.db that ipamguard saved before each write, "
        "oldest first. Put one back with `ipamguard restore FILE`.",
        epilog="Exit codes: 0 listed, 1 no backups, 2 error.",
    )
    parser.add_argument("--backup-dir", default=BACKUP_DIR, metavar="DIR")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.backups import list_backups
    from ipamguard.cli.common import print_json

    backups = list_backups(args.backup_dir)
    if args.json:
        print_json(
            [{"path": b.path, "taken": b.taken, "txid": b.txid, "size": b.size} for b in backups]
        )
    else:
        for b in backups:
            print(f"{b.path}  {b.taken}  txid {b.txid}  {b.size} bytes")
        if not backups:
            print(f"no backups in {args.backup_dir}")
    return EXIT_OK if backups else EXIT_NOTHING
