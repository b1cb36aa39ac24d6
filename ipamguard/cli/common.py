"""Pieces the sub-commands share: common options, JSON output, confirmation."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

from ipamguard.errors import Refused
from ipamguard.ipam.paths import ROOTFUL_DB

if TYPE_CHECKING:
    from ipamguard.healing import Settings
    from ipamguard.ipam.paths import PodmanPaths
    from ipamguard.liveness import LivenessSource


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


def paths_for(args: argparse.Namespace) -> PodmanPaths:
    """The PodmanPaths of the mode asked for, with the command line's overrides."""

    from ipamguard.ipam.paths import podman_paths

    paths = podman_paths(args.user)
    overrides = {
        "db": getattr(args, "db", None),
        "network_dir": getattr(args, "network_dir", None),
        "socket_url": getattr(args, "url", None),
        "backup_dir": getattr(args, "backup_dir", None),
    }
    return dataclasses.replace(paths, **{k: v for k, v in overrides.items() if v})


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
        help=f"podman's network configs (default: {ROOTFUL_NETWORK_DIR}; rootless: "
        "~/.config/containers/networks)",
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
        type=int,
        default=20,
        metavar="N",
        help="keep the newest N backups (default: 20)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    from ipamguard.healing import Settings

    return Settings(
        paths_for(args),
        lock_timeout=args.lock_timeout,
        backups_keep=getattr(args, "backups_keep", 20),
    )


def liveness_sources(
    args: argparse.Namespace,
) -> tuple[list[LivenessSource], list[LivenessSource]]:
    """(podman API sources, runtime-state sources) for the command line's options."""
    from ipamguard.liveness import (
        ConmonSource,
        InFlightSource,
        PodmanApiSource,
        RuntimeStateSource,
    )

    paths = paths_for(args)
    return [PodmanApiSource(paths.socket_url, args.podman_timeout)], [
        RuntimeStateSource(paths.runtime_dirs),
        ConmonSource(),
        InFlightSource(),
    ]


def finding_to_json(finding: Any) -> dict[str, Any]:
    result: dict[str, Any] = finding.to_dict()
    return result


def finding_to_text(finding: Any) -> str:
    return f"{finding.describe()} ({'; '.join(finding.evidence)})"
