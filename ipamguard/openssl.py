"""Keep OpenSSL out of the daemon: it never speaks TLS (podman's API, journald and D-Bus
are unix sockets) and hashes only a backup's SHA-256, which CPython also computes
without OpenSSL where it has its own (Debian's Python has, Fedora's has not; 85 against
14 ms for 25 MB, once per release). Not loading libssl and libcrypto keeps ~5 MB out of
its resident set (and OpenSSL out of a root daemon's address space).

``shed`` makes the modules that would load them unimportable: asyncio, http.client and
urllib do without ``ssl``. A dependency that imports it unconditionally cannot be used
by the daemon (prometheus_client does, for its push gateway: ipamguard.metrics writes
the text format itself).
"""

from __future__ import annotations

import importlib
import sys

SSL_MODULES = ("ssl", "_ssl")
HASHLIB_BACKEND = "_hashlib"
BUILTIN_SHA256 = ("_sha2", "_sha256")  # Python 3.12+, 3.11


def shed() -> list[str]:
    """Make ``ssl`` and, where CPython has its own SHA-256, hashlib's OpenSSL backend
    unimportable in this process; call before anything imports them (a module already
    loaded is left alone). The modules shed, by name."""
    names = [name for name in SSL_MODULES if name not in sys.modules]
    if HASHLIB_BACKEND not in sys.modules and _has_builtin_sha256():
        names.append(HASHLIB_BACKEND)
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    return names


def _has_builtin_sha256() -> bool:
    for name in BUILTIN_SHA256:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return True
    return False
