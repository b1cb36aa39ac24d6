"""``ipamguard status``: the daemon at a glance, from the status file it keeps.

Reads /run/ipamguard/state.json (``--user``: $XDG_RUNTIME_DIR/ipamguard/), which
the daemon rewrites after every reconcile: no privileges and no connection to the
daemon are needed. ``assess`` is pure: the document, the time and whether the
daemon's process still runs -> an exit code and the reasons.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipamguard.cli.common import add_json_option
from ipamguard.errors import EXIT_ERROR, EXIT_NOTHING, EXIT_OK

STALE_AFTER_RESYNCS = 3  # no successful reconcile for 3 x resync_seconds: stale

HEALTHY, FINDINGS, UNHEALTHY, STALE, NOT_RUNNING = (
    "healthy", "findings", "unhealthy", "stale", "not running",
)  # fmt: skip


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="the daemon at a glance: running, last reconcile, findings",
        description="Show the daemon's state from the file it rewrites after every "
        "reconcile (/run/ipamguard/state.json; with --user "
        "$XDG_RUNTIME_DIR/ipamguard/state.json): whether it runs, its last reconcile "
        "(when, how long, what it found and released), podman reachable, repair on or "
        "off, the metrics file, subnets low on addresses. Needs no privileges.",
        epilog="Exit codes: 0 healthy, 1 findings (open findings or a subnet low on "
        "addresses), 2 not running, stale (no successful reconcile for "
        f"{STALE_AFTER_RESYNCS} x resync_seconds), last reconcile failed, or podman "
        "unreachable.",
    )
    parser.add_argument(
        "--user",
        action="store_true",
        help="the calling user's daemon (`ipamguard daemon --user`) instead of root's",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="read this status file instead (default: the daemon's, see above)",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


@dataclass
class Health:
    exit_code: int
    status: str  # healthy, findings, unhealthy, stale, not running
    reasons: list[str] = field(default_factory=list)


def assess(document: Mapping[str, Any] | None, now: float, alive: bool) -> Health:
    """How the daemon does, from its status file (None: no file)."""
    if document is None:
        return Health(EXIT_ERROR, NOT_RUNNING, ["no status file: the daemon is not running"])
    if not document.get("running"):
        stopped = _ago(now - _number(document.get("updated_at"), now))
        return Health(EXIT_ERROR, NOT_RUNNING, [f"the daemon stopped {stopped} ago"])
    if not alive:
        pid = document.get("pid")
        return Health(EXIT_ERROR, NOT_RUNNING, [f"its process {pid} is gone"])
    resync = _number(document.get("resync_seconds"), 300.0)
    success = document.get("last_success_at")
    since = now - _number(success if success is not None else document.get("started_at"), now)
    if since > STALE_AFTER_RESYNCS * resync:
        what = "last successful reconcile" if success is not None else "no reconcile done since"
        return Health(
            EXIT_ERROR, STALE,
            [f"{what} {_ago(since)} ago (more than {STALE_AFTER_RESYNCS} x resync_seconds "
             f"= {_ago(STALE_AFTER_RESYNCS * resync)})"],
        )  # fmt: skip
    problems = []
    last = document.get("last_cycle") or {}
    if last and not last.get("ok"):
        problems.append(f"last reconcile failed: {last.get('error')}")
    if not document.get("podman_reachable", True):
        problems.append("podman is unreachable: nothing is released meanwhile")
    if problems:
        return Health(EXIT_ERROR, UNHEALTHY, problems)
    found = []
    if last.get("open_findings"):
        found.append(f"{_count(last['open_findings'], 'open finding')} (ipamguard check)")
    low = document.get("low_subnets") or []
    if low:
        found.append(f"{_count(len(low), 'subnet')} low on addresses")
    if found:
        return Health(EXIT_NOTHING, FINDINGS, found)
    return Health(EXIT_OK, HEALTHY)


def run(args: argparse.Namespace) -> int:
    from ipamguard.cli.common import print_json
    from ipamguard.errors import IpamguardError
    from ipamguard.state import StateUnreadable, process_alive, read_state, state_path

    path = args.state_file or state_path(args.user)
    try:
        document = read_state(path)
    except StateUnreadable as error:
        raise IpamguardError(str(error)) from None
    alive = document is not None and process_alive(
        int(_number(document.get("pid"), 0)), document.get("pid_start")
    )
    now = time.time()
    health = assess(document, now, alive)
    if args.json:
        print_json(
            {
                "status": health.status,
                "exit_code": health.exit_code,
                "reasons": health.reasons,
                "state_file": path,
                "state": document,
            }
        )
    else:
        sys.stdout.write(render(health, document, path, now))
    return health.exit_code


def render(health: Health, document: Mapping[str, Any] | None, path: str, now: float) -> str:
    """The human-readable report."""
    reasons = ": " + "; ".join(health.reasons) if health.reasons else ""
    lines = [f"ipamguard: {health.status}{reasons}"]
    if document is None:
        lines.append(f"  status file: {path} (missing)")
        return "\n".join(lines) + "\n"
    up = _ago(now - _number(document.get("started_at"), now))
    mode = "a user's rootless podman" if document.get("user") else "root's podman"
    lines.append(f"  daemon:      pid {document.get('pid')}, up {up} ({mode})")
    lines.append("  last cycle:  " + _last_cycle(document.get("last_cycle"), now))
    counters = document.get("counters") or {}
    lines.append("  released:    " + _totals(counters.get("releases")) + " (all time)")
    lines.append("  refused:     " + _totals(counters.get("refusals")) + " (all time)")
    podman = "reachable" if document.get("podman_reachable") else "UNREACHABLE"
    lines.append(f"  podman:      {podman} ({document.get('podman_url')})")
    lines.append(f"  repair:      {'on' if document.get('repair_enabled') else 'off'}")
    lines.append("  metrics:     " + _metrics(document.get("metrics") or {}, now))
    for subnet in document.get("low_subnets") or []:
        lines.append(
            f"  low:         {subnet.get('network')} {subnet.get('subnet')}: {subnet.get('free')}"
            f" of {subnet.get('size')} addresses free ({subnet.get('free_percent')} %)"
        )
    return "\n".join(lines) + "\n"


def _last_cycle(cycle: Mapping[str, Any] | None, now: float) -> str:
    if not cycle:
        return "none yet (the first reconcile runs)"
    when = _ago(now - _number(cycle.get("finished_at"), now))
    head = f"{when} ago ({cycle.get('reason')}), took {_number(cycle.get('seconds'), 0):.3f} s"
    if not cycle.get("ok"):
        return f"{head}: FAILED: {cycle.get('error')}"
    findings = cycle.get("findings") or {}
    detail = ", ".join(f"{k} {n}" for k, n in findings.items())
    released = cycle.get("released") or {}
    did = ", ".join(f"{k} {n}" for k, n in released.items())
    text = f"{head}: {cycle.get('summary')}"
    if detail:
        text += f" [{detail}]"
    if did:
        text += f"; released {did}"
    return text


def _metrics(metrics: Mapping[str, Any], now: float) -> str:
    textfile = metrics.get("textfile")
    if not textfile:
        return "off ([metrics] textfile unset)"
    if metrics.get("error"):
        return f"{textfile}: NOT WRITTEN: {metrics['error']}"
    written = metrics.get("written_at")
    if written is None:
        return f"{textfile} (not written yet)"
    return f"{textfile}, written {_ago(now - _number(written, now))} ago"


def _totals(values: Mapping[str, Any] | None) -> str:
    shown = [f"{k} {int(_number(n, 0))}" for k, n in sorted((values or {}).items()) if n]
    return ", ".join(shown) or "none"


def _number(value: Any, default: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else default


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ago(seconds: float) -> str:
    """12 s, 5 min, 2 h 05 min, 3 d 04 h."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"
