"""The ``ipamguard`` command line: a thin shell around the library.

Each sub-command lives in its own module that exposes ``register(subparsers)``
(adds its parser and sets ``func``) and keeps its imports lazy, so that
``ipamguard --help`` starts fast.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from ipamguard import __version__
from ipamguard.errors import EXIT_ERROR, IpamguardError

EXIT_CODES_HELP = """\
exit codes:
  0  done / healthy
  1  nothing to do, not found, or findings present
  2  error: bad arguments, bad or damaged file, lock timeout, podman unreachable
"""

# Sub-command modules, in the order --help lists them.
COMMANDS = (
    "dump", "check", "repair", "release", "backups", "restore", "daemon", "status", "doctor",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipamguard",
        description="Find and heal leaked IP allocations in podman's ipam.db.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ipamguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    import importlib

    for name in COMMANDS:
        module = importlib.import_module(f"ipamguard.cli.{name}")
        module.register(subparsers)
    return parser


def entry() -> None:
    """The ``ipamguard`` program (console script, ``python -m ipamguard``): the daemon
    runs without OpenSSL (ipamguard.openssl)."""
    if sys.argv[1:2] == ["daemon"]:
        from ipamguard import openssl

        openssl.shed()
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "daemon":
        # A one-shot command builds a few hundred thousand small objects (the
        # allocations of a large ipam.db) and exits: the cycle collector would
        # walk them again and again for nothing (about a fifth of ``dump`` at
        # 65,000 allocations). The daemon keeps it, it lives for months.
        gc.disable()
    try:
        result: int = args.func(args)
        return result
    except IpamguardError as error:
        print(f"ipamguard: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("ipamguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
