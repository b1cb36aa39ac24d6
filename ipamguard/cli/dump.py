"""``ipamguard dump``: every network, subnet, allocation and ids entry."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ipamguard.cli.common import add_db_option, add_json_option, add_timeout_option
from ipamguard.errors import EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dump",
        help="show everything in ipam.db",
        description="Show every network, subnet, allocation (IP -> container ID) and ids "
        "entry of podman's ipam.db. Read-only: takes bbolt's shared lock for "
        "as long as copying the file takes.",
    )
    add_db_option(parser)
    add_json_option(parser)
    add_timeout_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.bolt import DB
    from ipamguard.cli.common import context_from
    from ipamguard.ipam.model import read_ipam

    db_path = context_from(args).paths.db
    with DB.open(db_path, readonly=True, timeout=args.lock_timeout) as db, db.view() as tx:
        state = read_ipam(tx)
    if args.json:
        from ipamguard.cli.common import print_json
        from ipamguard.ipam.report import state_to_json

        print_json(state_to_json(state, db_path))
    else:
        from ipamguard.ipam.report import state_to_text

        sys.stdout.write(state_to_text(state, db_path))
    return EXIT_OK
