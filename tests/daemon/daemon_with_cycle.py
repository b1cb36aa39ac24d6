"""``ipamguard daemon`` with a stand-in reconcile cycle, for tests and benchmarks.

    python -m daemon_with_cycle MODULE:FUNCTION [--config PATH] [--log-format F] [--user]

The shipped CLI has no such hook; this runs the same ``run_daemon`` with the cycle
that ``MODULE:FUNCTION()`` returns (e.g. ``recording_cycle:make_cycle``), and
reports errors like the CLI does (one line, exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ipamguard.daemon.app import run_daemon
from ipamguard.errors import IpamguardError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="daemon_with_cycle")
    parser.add_argument("cycle", metavar="MODULE:FUNCTION")
    parser.add_argument("--config")
    parser.add_argument("--log-format")
    parser.add_argument("--user", action="store_true")
    args = parser.parse_args(argv)
    module_name, _, function_name = args.cycle.partition(":")
    cycle = getattr(importlib.import_module(module_name), function_name)()
    try:
        return run_daemon(args.config, args.log_format, user=args.user, cycle=cycle)
    except IpamguardError as error:
        print(f"ipamguard: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
