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


# What ``import ssl`` and hashlib's OpenSSL backend would map into the daemon: it never
# speaks TLS (podman's API, journald and D-Bus are unix sockets) and hashes only a
# backup's SHA-256, which CPython also computes without OpenSSL (slower: 85 against
# 14 ms for 25 MB, once per release). Not loading libssl and libcrypto keeps ~6 MiB out
# of its resident set (and OpenSSL out of a root daemon's address space).
OPENSSL_MODULES = ("ssl", "_ssl")
BUILTIN_SHA256 = ("_sha2", "_sha256")  # Python 3.12+, 3.11


def entry() -> None:
    """The ``ipamguard`` program (console script, ``python -m ipamguard``)."""
    if sys.argv[1:2] == ["daemon"]:
        shed_openssl()
    sys.exit(main())


def shed_openssl() -> list[str]:
    """Make ``ssl`` (asyncio and http.client do without it) and, where CPython has its
    own SHA-256 (Fedora's has not), hashlib's OpenSSL backend unimportable in this
    process; call before anything imports them. The modules shed, by name."""
    shed = [name for name in OPENSSL_MODULES if name not in sys.modules]
    if "_hashlib" not in sys.modules and _has_builtin_sha256():
        shed.append("_hashlib")
    for name in shed:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    return shed


def _has_builtin_sha256() -> bool:
    import importlib

    for name in BUILTIN_SHA256:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return True
    return False


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
