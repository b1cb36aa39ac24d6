"""``ipamguard daemon``: the long-running service (systemd, Type=notify)."""

from __future__ import annotations

import argparse
from typing import Any

from ipamguard.config import DEFAULT_CONFIG_PATH, LOG_FORMATS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "daemon",
        help="watch ipam.db and podman's events; alert on (or heal) leaks",
        description="Run the service: a full reconcile at start, then again after "
        "podman's container events, changes of ipam.db and every resync interval. "
        "Leaks are reported in the journal; with [repair] enabled = true, confirmed "
        "leaks are released. Talks to systemd (READY, STATUS, WATCHDOG); SIGHUP "
        "reloads the configuration, SIGTERM stops.",
        epilog="Exit codes: 0 stopped by SIGTERM/SIGINT, 2 bad configuration or "
        "arguments (one line on stderr).",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"configuration file (default: {DEFAULT_CONFIG_PATH}, with --user "
        "~/.config/ipamguard/ipamguard.toml; the defaults if missing)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="override [log] format (auto: the journal when its socket exists)",
    )
    parser.add_argument(
        "--user",
        action="store_true",
        help="watch the calling user's rootless podman (config "
        "~/.config/ipamguard/ipamguard.toml, backups under $XDG_STATE_HOME; what "
        "`systemctl --user enable --now ipamguard` runs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ipamguard.daemon.app import run_daemon

    return run_daemon(args.config, args.log_format, user=args.user)
