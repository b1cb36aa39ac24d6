"""Pieces the sub-commands share: common options, JSON output, confirmation."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ipamguard.errors import Refused
from ipamguard.ipam.paths import ROOTFUL_DB


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=ROOTFUL_DB,
        metavar="PATH",
        help=f"the ipam.db file (default: {ROOTFUL_DB}, rootful podman)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="give up when a lock stays held this long (default: 2)",
    )


def print_json(document: Any) -> None:
    # compact: json's C encoder (indent= falls back to pure Python, 10x slower)
    sys.stdout.write(json.dumps(document) + "\n")


def confirm(question: str, assume_yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless --yes was given."""
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise Refused("refusing to write without --yes (no terminal to ask)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise Refused("not confirmed; nothing was changed")
