"""``ipamguard repair``: release the confirmed findings, safely."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ipamguard.cli.common import (
    add_backup_options,
    add_db_option,
    add_json_option,
    add_liveness_options,
    add_timeout_option,
)
from ipamguard.errors import EXIT_NOTHING, EXIT_OK, UsageError
from ipamguard.kinds import KINDS, LEAKED, ORPHAN_NETWORK, RELEASABLE_KINDS

DEFAULT_KINDS = f"{LEAKED},{ORPHAN_NETWORK}"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "repair",
        help="release leaked allocations (asks podman twice, backs up first)",
        description="Find what `check` finds, then release the findings of the chosen "
        "kinds. podman is asked again right before the write; then, under podman's "
        "network lock, ipam.db must still be exactly the file that was judged (else "
        "everything is looked at again), runtime state and conmon are asked again, "
        "every address is probed on its network's bridge (an answer: not released), "
        "a record of what it removes is saved, and the change is committed under bbolt's file "
        "lock (milliseconds). A live container's allocation is never released; when "
        "a liveness source cannot answer, nothing is.",
        epilog="Kinds that can be released: leaked, stale, orphan-network (dangling and "
        "malformed are reported only). Exit codes: 0 everything found was "
        "repaired (or nothing found), 1 findings remain, 2 error.",
    )
    parser.add_argument(
        "--kind",
        default=DEFAULT_KINDS,
        help=f"comma-separated kinds to release (default: {DEFAULT_KINDS})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="observe twice this far apart; release only what both agree on (default: 5; "
        "0 only when no container of another storage root can be starting)",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="show what would be released")
    add_db_option(parser)
    add_liveness_options(parser)
    add_backup_options(parser)
    add_json_option(parser)
    add_timeout_option(parser)
    parser.set_defaults(func=run)


def parse_kinds(text: str) -> set[str]:
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = kinds - set(KINDS)
    if unknown or not kinds:
        raise UsageError(f"--kind: unknown kind(s) {', '.join(sorted(unknown)) or '(none)'}; "
                         f"known: {', '.join(KINDS)}")  # fmt: skip
    return kinds


FENCE_ATTEMPTS = 3  # ipam.db changed between the look and the write: look again


def run(args: argparse.Namespace) -> int:
    from ipamguard.cli.common import context_from, print_json

    kinds = parse_kinds(args.kind)
    if args.json and not (args.yes or args.dry_run):
        raise UsageError("--json needs --yes (or --dry-run): there is no prompt in JSON mode")
    if not 0 <= args.grace <= 3600:
        raise UsageError(f"--grace: expected seconds between 0 and 3600, got {args.grace:g}")
    ctx = context_from(args)
    stores = ctx.stores()
    first_seen = _first_look(ctx, stores, args.grace)  # every store, then one wait
    results = [_repair_store(ctx, store, kinds, args, first_seen) for store in stores]
    result = _merged(results)
    findings = [f for _, found in results for f in found]
    done = [] if args.dry_run else result.released
    remaining = [f for f in findings if f not in done]
    if args.json:
        print_json(_document(args, result, remaining))
    else:
        _print_text(args, result, remaining)
    return EXIT_NOTHING if remaining else EXIT_OK


def _first_look(ctx: Any, stores: list[Any], grace: float) -> dict[Any, float]:
    """With a grace period: look at every store, wait once; when each finding was seen."""
    from ipamguard.healing import judge, observe

    first_seen: dict[Any, float] = {}
    if grace <= 0:
        return first_seen
    for store in stores:
        found = judge(observe(ctx, store), first_seen, grace=grace).findings
        first_seen.update({f.key: f.first_seen for f in found})
    print(f"observed; looking again in {grace:g} s", file=sys.stderr)
    time.sleep(grace)
    return first_seen


def _repair_store(
    ctx: Any, store: Any, kinds: set[str], args: argparse.Namespace, first_seen: dict[Any, float]
) -> tuple[Any, list[Any]]:
    """(RepairResult, the findings judged) for one allocation store."""
    from ipamguard.errors import Changed
    from ipamguard.healing import repair

    for attempt in range(FENCE_ATTEMPTS):
        findings, observation = _look(ctx, store, args, first_seen)
        _ask(findings, kinds, args)
        try:
            prober = ctx.prober()
            return repair(ctx, store, observation, findings, kinds, prober, args.dry_run), findings
        except Changed as changed:
            if attempt == FENCE_ATTEMPTS - 1:
                raise
            print(f"{changed}; looking again", file=sys.stderr)
    raise AssertionError("unreachable")


def _merged(results: list[tuple[Any, list[Any]]]) -> Any:
    from ipamguard.healing import RepairResult

    merged = RepairResult()
    for result, _ in results:
        merged.released += result.released
        merged.refused += result.refused
        merged.notes += result.notes
        merged.backup = result.backup or merged.backup
        merged.lock_hold = max(merged.lock_hold, result.lock_hold)
        merged.txid = result.txid if result.txid is not None else merged.txid
    return merged


def _look(
    ctx: Any, store: Any, args: argparse.Namespace, first_seen: dict[Any, float]
) -> tuple[list[Any], Any]:
    """Observe: the findings (confirmed if first seen ``--grace`` ago) and the look."""
    from ipamguard.errors import PodmanUnavailable
    from ipamguard.healing import judge, observe

    observation = observe(ctx, store)
    judged = judge(observation, first_seen, grace=args.grace)
    first_seen.update({f.key: f.first_seen for f in judged.findings})
    if not judged.liveness_complete:
        raise PodmanUnavailable(
            "could not ask every liveness source ("
            + "; ".join(judged.liveness_failures)
            + "); nothing was released"
        )
    return judged.findings, observation


def _ask(findings: list[Any], kinds: set[str], args: argparse.Namespace) -> None:
    from ipamguard.cli.common import confirm, finding_to_text

    releasable = [f for f in findings if f.kind in kinds & RELEASABLE_KINDS]
    if releasable and not args.dry_run and not args.yes:
        for finding in releasable:
            print("will release " + finding_to_text(finding), file=sys.stderr)
        confirm(f"Release {len(releasable)} finding(s)?", assume_yes=False)


def _document(args: argparse.Namespace, result: Any, remaining: list[Any]) -> dict[str, Any]:
    from ipamguard.cli.common import finding_to_json

    return {
        "dry_run": args.dry_run,
        "released": [finding_to_json(f) for f in result.released],
        "refused": [finding_to_json(f) | {"reason": r} for f, r in result.refused],
        "remaining": [finding_to_json(f) for f in remaining],
        "notes": result.notes,
        "backup": result.backup,
        "txid": result.txid,
        "lock_hold_ms": round(result.lock_hold * 1000, 3),
    }


def _print_text(args: argparse.Namespace, result: Any, remaining: list[Any]) -> None:
    from ipamguard.cli.common import finding_to_text

    verb = "would release" if args.dry_run else "released"
    for finding in result.released:
        print(f"{verb} {finding_to_text(finding)}")
    for finding, reason in result.refused:
        print(f"left {finding_to_text(finding)}: {reason}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.backup:
        print(f"backup: {result.backup}", file=sys.stderr)
    print(f"{len(result.released)} {verb}, {len(remaining)} finding(s) remain", file=sys.stderr)
