"""``ipamguard doctor``: is systemd-networkd fighting podman over container links?

    ipamguard doctor [--json] [--network-dir DIR]... [--cni-dir DIR]...
    ipamguard doctor --fix [--yes] [--dry-run] [--json]

Exit 0 healthy, 1 problems found, 2 something could not be checked (or the
fix could not be applied).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipamguard.errors import Refused, UsageError

if TYPE_CHECKING:
    from ipamguard.doctor import DoctorReport, DoctorSources, FixPlan

DESCRIPTION = """\
Check whether systemd-networkd manages the bridges and veths of container
networks (podman/netavark, CNI, docker) and whether every container veth is on
its bridge and up. With --fix, write a drop-in .network file that marks those
links unmanaged and ask networkd to reload.

exit codes: 0 healthy, 1 problems found, 2 something could not be checked
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check systemd-networkd vs. container links; fix on request",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--fix", action="store_true", help="mark container links unmanaged for networkd"
    )
    parser.add_argument("--yes", action="store_true", help="with --fix: do not ask")
    parser.add_argument(
        "--dry-run", action="store_true", help="with --fix: show the drop-in, change nothing"
    )
    parser.add_argument(
        "--network-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="podman network config dir (repeatable; default /etc/containers/networks)",
    )
    parser.add_argument(
        "--cni-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="CNI config dir (repeatable; default /etc/cni/net.d)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, sources: DoctorSources | None = None) -> int:
    from ipamguard.doctor import DoctorSources, run_doctor

    if (args.yes or args.dry_run) and not args.fix:
        raise UsageError("--yes and --dry-run only go with --fix")
    if args.fix and not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise Refused("--fix asks before it writes, and there is no terminal to ask: add --yes")
    if sources is None:
        defaults = DoctorSources()
        sources = DoctorSources(
            podman_dirs=tuple(args.network_dir or defaults.podman_dirs),
            cni_dirs=tuple(args.cni_dir or defaults.cni_dirs),
        )
    report = run_doctor(sources)
    if not args.fix:
        _emit(args, report)
        return report.exit_code
    return _fix(args, report, sources)


def _fix(args: argparse.Namespace, report: DoctorReport, sources: DoctorSources) -> int:
    from ipamguard.doctor import apply_fix, plan_fix
    from ipamguard.doctor.fix import NOTHING

    plan = plan_fix(report, sources.dropin_path)
    if plan.action == NOTHING or args.dry_run:
        _emit(args, report, plan)
        return report.exit_code
    shown = sys.stderr if args.json else sys.stdout  # keep stdout one JSON document
    _print_report(report, shown)
    _print_plan(plan, shown)  # always shown before it is written
    if not args.yes and not _confirm("Write it and reload systemd-networkd? [y/N] "):
        print("nothing changed", file=sys.stderr)
        return report.exit_code
    after = apply_fix(plan, sources)
    _emit(args, after, plan, before=report)
    return after.exit_code


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _emit(
    args: argparse.Namespace,
    report: DoctorReport,
    plan: FixPlan | None = None,
    before: DoctorReport | None = None,
) -> None:
    """The final output: the report (after the fix, if one was applied)."""
    if args.json:
        print(json.dumps(_json(report, plan, before), indent=2))
        return
    if before is not None:
        print("after the fix:")
    _print_report(report, sys.stdout)
    if plan is not None and before is None:
        if plan.action == "nothing":
            print(f"--fix: nothing to do: {plan.reason}")
        else:
            _print_plan(plan, sys.stdout, dry_run=args.dry_run)


def _json(
    report: DoctorReport, plan: FixPlan | None, before: DoctorReport | None
) -> dict[str, Any]:
    from ipamguard.doctor.report import finding_to_dict

    data = report.to_dict()
    if plan is not None:
        data["fix"] = {
            "action": plan.action,
            "path": str(plan.path),
            "content": plan.content,
            "reason": plan.reason,
            "links": list(plan.links),
            "warnings": list(plan.warnings),
            "applied": before is not None,
            "findings_before": [finding_to_dict(f) for f in (before or report).findings],
        }
    return data


def _print_report(report: DoctorReport, out: Any) -> None:
    networkd = report.networkd
    state = {True: "running", False: "not running", None: "unknown"}[networkd.running]
    print(f"systemd-networkd: {state}", file=out)
    bridges = ", ".join(sorted(report.container.bridges)) or "none"
    print(f"container bridges: {bridges}", file=out)
    veths = ", ".join(
        f"{veth} -> {bridge or 'NO BRIDGE'}"
        for veth, bridge in sorted(report.container.veths.items())
    )
    print(f"container veths: {veths or 'none'}", file=out)
    for finding in report.findings:
        print(f"{finding.severity.upper():8} {finding.message}", file=out)
        for path in finding.may_match:
            print(f"         may also match (keys not checked): {path}", file=out)
        if finding.hint:
            print(f"         hint: {finding.hint}", file=out)
    verdict = {0: "healthy", 1: "problems found", 2: "could not check everything"}
    print(verdict.get(report.exit_code, "?"), file=out)


def _print_plan(plan: FixPlan, out: Any, *, dry_run: bool = False) -> None:
    verb = "would" if dry_run else "will"
    print(f"--fix {verb}: {plan.reason}", file=out)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=out)
    print(f"--- {plan.path}", file=out)
    print(plan.content, end="", file=out)
    print("---", file=out)
