"""The daemon hands the heap's free pages back after each reconcile."""

from __future__ import annotations

import ctypes
import platform

import pytest

from ipamguard.daemon import memory


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_kernel() -> None:
    # Many small C allocations (below the mmap threshold, so they live in the heap),
    # all but the last freed: glibc keeps the freed memory mapped until trimmed.
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024 - 64) for _ in range(2000)]  # ~128 MB
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024 - 64)  # touch: resident
    for block in blocks[:-1]:
        libc.free(block)
    before = _rss_kib()
    assert memory.return_free_memory() is True
    after = _rss_kib()
    libc.free(blocks[-1])
    assert before - after > 64 * 1024, (before, after)  # at least 64 MB given back


def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a, **k: object())
    try:
        assert memory.return_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()


ARENAS = """
import ctypes, sys, threading
sys.path.insert(0, sys.argv[1])
from ipamguard.daemon import memory
if sys.argv[2] == "one":
    assert memory.one_heap() is True
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
go = threading.Barrier(4)
def work():  # threads allocating at the same time: glibc gives each its own heap
    go.wait()
    for _ in range(200):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
libc.open_memstream.restype = ctypes.c_void_p
stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(buf.value.decode().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's")
@pytest.mark.parametrize(("mode", "one"), [("one", True), ("default", False)])
def test_one_heap_for_every_thread(mode: str, one: bool) -> None:
    """After one_heap(), threads allocating at once share the main heap; without it
    glibc creates more (the control: this test can tell the two apart)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", ARENAS, repo, mode],
                         capture_output=True, text=True, check=True)  # fmt: skip
    heaps = int(out.stdout)
    assert (heaps == 1) is one, heaps
