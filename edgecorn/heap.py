"""Giving freed heap memory back to the system (glibc's malloc_trim), now and then.

Why (issue 14's soak, bench/tlsheap.py reproduces it without edgecorn): every uvloop TLS
connection allocates a 256 KiB read buffer with PyMem_RawMalloc and frees it when the
connection goes. After glibc has freed its first mmap'd block of that size, its dynamic
mmap threshold rises above it and later buffers come from the main heap, between small
long-lived objects. What they touched stays resident after free: glibc returns only the
top of the heap, never free pages in its middle. A worker serving new TLS connections
crept ~220 bytes a connection (h2, uvloop), none of it live: malloc_trim(0) gave it all
back. Fixing the threshold instead (M_MMAP_THRESHOLD) keeps every large block in its own
mapping, which made a 1 MiB allocation ~10 times slower here (page faults each time),
so the worker trims from its once-a-second tick instead: at most once every
`malloc_trim_interval` seconds, and only after a connection has ended (an idle worker's
heap has nothing new to give back). A trim took 2-4 ms with ~5 MB to return.

Elsewhere than glibc (musl, macOS) there is no malloc_trim and nothing is done.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable

Trim = Callable[[int], object]


def _glibc_malloc_trim() -> Trim | None:
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: libc's, on Linux
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


MALLOC_TRIM: Trim | None = _glibc_malloc_trim()


class HeapTrim:
    """When to trim, counted in the worker's once-a-second ticks."""

    def __init__(self, interval: float, trim: Trim | None = MALLOC_TRIM) -> None:
        self.interval = math.ceil(interval)  # ticks between trims; 0: never
        self.trim = trim
        self.ticks = 0  # since the last trim
        self.ended = 0  # the manager's count of ended connections at the last trim

    def tick(self, ended: int) -> bool:
        """One tick; `ended` counts the connections that have ended so far. True when it
        trimmed."""
        if self.trim is None or self.interval == 0:
            return False
        self.ticks += 1
        if self.ticks < self.interval or ended == self.ended:
            return False
        self.ticks = 0
        self.ended = ended
        self.trim(0)
        return True
