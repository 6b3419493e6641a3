"""Keep freed memory in the process (glibc): otherwise every large torch or numpy buffer is a fresh
mmap, and the kernel's page faults on re-zeroing it cost as much CPU time as the arithmetic
(docs/methods.md, "Memory allocation")."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_THRESHOLD_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed heap memory; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
