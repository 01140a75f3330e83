"""Keep freed image buffers in the process heap instead of handing them back to the OS.

A training sample allocates and frees a handful of 1-5 MB arrays (the mosaic window, its resize,
HSV and RGB copies) and every batch a 20 MB one. glibc serves blocks that large with mmap, or
trims them off the heap top when freed, so each sample page-faults (and the kernel zeroes) the
same memory again: measured ~15% of a loader's CPU time at 640 px. Raising glibc's mmap and trim
thresholds (what MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ would set at start-up) keeps
those blocks for reuse. The cost is that the process keeps up to the trim threshold of freed
memory; elsewhere than glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD = 64 << 20  # blocks under 64 MB come from the heap (a 640 px batch of 16 is 20 MB)
TRIM_THRESHOLD = 256 << 20  # the heap keeps up to 256 MB of freed memory
_done = False


def keep_freed_memory() -> bool:
    """Raise this process's glibc mmap and trim thresholds (once); False where there is no glibc."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                         TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    _done = ok
    return ok
