"""Keep the daemon's C heap small: one heap for every thread, and its free pages given
back to the kernel after a reconcile.

A reconcile of a large ipam.db builds transient objects (podman's answer, the
pages it parses) and frees them; glibc keeps the freed memory mapped, so the
daemon's resident set grows to the peak of its worst cycle and stays there
(65,000 allocations: about 225 MB resident for about 60 MB of live objects).
``malloc_trim(0)`` returns the free pages at the cost of a few milliseconds.
A libc without it (musl) leaves the heap as it is.

glibc also gives threads heaps ("arenas") of their own, each keeping its own free
memory: the reconcile runs in a worker thread, so its transient objects fragmented a
second heap (65,000 allocations: 165 MiB resident with the default arenas, 139 MiB
with one; bench/bench_process.py). The daemon has a few threads that seldom allocate
at once: one heap costs it a few ms per change at most (65,000 allocations, two
alternating rounds: 43-45 ms with one heap, 39-44 ms without; goal 50 ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache
from typing import Any

M_ARENA_MAX = -8  # mallopt(3)'s parameter: how many heaps glibc may create


def one_heap() -> bool:
    """Every thread started from now on allocates from glibc's main heap (mallopt
    M_ARENA_MAX 1); call before starting threads. False where not possible (not glibc)."""
    mallopt: Callable[[int, int], int] | None = _libc_function("mallopt")
    return mallopt is not None and mallopt(M_ARENA_MAX, 1) == 1


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    trim: Callable[[int], int] | None = _libc_function("malloc_trim")
    return trim


def _libc_function(name: str) -> Any:
    """The C library's function ``name``, None if there is none (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None


def return_free_memory() -> bool:
    """True if the C heap's free memory was offered back to the kernel."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
