"""Pieces the sub-commands share: common options, JSON output, confirmation."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ipamguard.errors import Refused, UsageError
from ipamguard.ipam.paths import ROOTFUL_DB

if TYPE_CHECKING:
    from ipamguard.context import Context


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        help=f"the ipam.db file (default: {ROOTFUL_DB} as root; with --user, "
        "$XDG_RUNTIME_DIR/containers/networks/ipam.db)",
    )
    parser.add_argument(
        "--user",
        action="store_true",
        default=None,
        help="rootless podman of the calling user (the default when not run as root)",
    )


def context_from(args: argparse.Namespace) -> Context:
    """The one Context for this command line (paths, locks, sources, timeouts)."""
    from ipamguard.context import Overrides, build_context

    overrides = Overrides(
        db=getattr(args, "db", None),
        network_dir=getattr(args, "network_dir", None),
        socket_url=getattr(args, "url", None),
        backup_dir=getattr(args, "backup_dir", None),
    )
    return build_context(
        args.user,
        overrides,
        lock_timeout=_bounded(getattr(args, "lock_timeout", 2.0), "--lock-timeout"),
        podman_timeout=_bounded(getattr(args, "podman_timeout", 5.0), "--podman-timeout"),
        backups_keep=getattr(args, "backups_keep", 20),
        podman_command=True,
    )


def _bounded(value: float, option: str) -> float:
    from ipamguard.context import MAX_TIMEOUT

    if not 0 < value <= MAX_TIMEOUT:
        raise UsageError(f"{option}: expected seconds between 0 and {MAX_TIMEOUT:g}, got {value:g}")
    return value


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
        help=f"podman's API socket (default: {PODMAN_SOCKET_URL}; rootless: "
        "unix://$XDG_RUNTIME_DIR/podman/podman.sock)",
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
        metavar="DIR",
        help=f"podman's network configs, and its network lock (default: as containers.conf "
        f"says, else {ROOTFUL_NETWORK_DIR}; rootless: $graphroot/networks, normally "
        "~/.local/share/containers/storage/networks)",
    )


def add_backup_dir_option(parser: argparse.ArgumentParser) -> None:
    from ipamguard.ipam.paths import BACKUP_DIR

    parser.add_argument(
        "--backup-dir",
        metavar="DIR",
        help=f"where a copy of ipam.db goes before every write (default: {BACKUP_DIR}; "
        "rootless: ~/.local/state/ipamguard/backups)",
    )


def add_backup_options(parser: argparse.ArgumentParser) -> None:
    add_backup_dir_option(parser)
    parser.add_argument(
        "--backups-keep",
        type=_at_least_one,
        default=20,
        metavar="N",
        help="keep the newest N backups (default: 20; at least 1)",
    )


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1: the backup just written must be kept")
    return value


def liveness_used(ctx: Context) -> str:
    """Which podman source the command asks: its API, or the podman command."""
    source = ctx.api_sources()[0]
    if getattr(source, "shown", "") == "podman command":
        return f"the podman command (no API socket at {ctx.paths.socket_url})"
    return f"podman's API at {ctx.paths.socket_url}"


def finding_to_json(finding: Any) -> dict[str, Any]:
    result: dict[str, Any] = finding.to_dict()
    return result


def finding_to_text(finding: Any) -> str:
    return f"{finding.describe()} ({'; '.join(finding.evidence)})"
