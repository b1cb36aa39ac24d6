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


def add_liveness_options(parser: argparse.ArgumentParser) -> None:
    from ipamguard.ipam.paths import PODMAN_SOCKET_URL, ROOTFUL_NETWORK_DIR

    parser.add_argument(
        "--url",
        default=PODMAN_SOCKET_URL,
        help=f"podman's API socket (default: {PODMAN_SOCKET_URL})",
    )
    parser.add_argument(
        "--podman-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for podman's API (default: 5)",
    )
    parser.add_argument(
        "--network-dir",
        default=ROOTFUL_NETWORK_DIR,
        metavar="DIR",
        help=f"podman's network configs (default: {ROOTFUL_NETWORK_DIR})",
    )


def add_backup_options(parser: argparse.ArgumentParser) -> None:
    from ipamguard.ipam.paths import BACKUP_DIR

    parser.add_argument(
        "--backup-dir",
        default=BACKUP_DIR,
        metavar="DIR",
        help=f"where a copy of ipam.db goes before every write (default: {BACKUP_DIR})",
    )
    parser.add_argument(
        "--backups-keep",
        type=int,
        default=20,
        metavar="N",
        help="keep the newest N backups (default: 20)",
    )


def settings_from(args: argparse.Namespace) -> Any:
    from ipamguard.healing import Settings
    from ipamguard.ipam.paths import ROOTFUL_NETWORK_LOCKS

    return Settings(
        db=args.db,
        network_dir=args.network_dir,
        lock_paths=ROOTFUL_NETWORK_LOCKS,
        lock_timeout=args.lock_timeout,
        backup_dir=getattr(args, "backup_dir", ""),
        backups_keep=getattr(args, "backups_keep", 20),
    )


def liveness_sources(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """(podman API sources, runtime-state sources) for the command line's options."""
    from ipamguard.liveness import ConmonSource, PodmanApiSource, RuntimeStateSource

    return [PodmanApiSource(args.url, args.podman_timeout)], [RuntimeStateSource(), ConmonSource()]


def finding_to_json(finding: Any) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "network": finding.network,
        "subnet": finding.subnet,
        "ip": finding.ip,
        "container_id": finding.container_id,
        "first_seen": finding.first_seen,
        "evidence": list(finding.evidence),
        "releasable": finding.releasable,
        "confirmed": finding.confirmed,
    }


def finding_to_text(finding: Any) -> str:
    where = " ".join(x for x in (finding.network, finding.subnet, finding.ip) if x)
    who = f" container {finding.container_id}" if finding.container_id else ""
    return f"{finding.kind}: {where}{who} ({'; '.join(finding.evidence)})"
