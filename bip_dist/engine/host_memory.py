"""glibc malloc settings for training on the CPU.

By default glibc hands freed memory back to the kernel: blocks above the (dynamic) mmap threshold are
unmapped, and the top of the heap is trimmed once more than the (dynamic) trim threshold is free. So each
training step re-faults and re-zeroes the pages of its activation and gradient tensors. A BiP step
allocates about twice what a dense step does, so it paid that twice: on a 2-core EPYC it made dense steps
5-9 % slower and BiP / dense 2.15-2.28x instead of 2.08-2.10x (`BIP_KEEP_HOST_MEMORY=0 make bench-step`
measures it).
Serving allocations up to 32 MiB (glibc's maximum mmap threshold) from the heap, and keeping up to 1 GiB of
freed heap instead of trimming it, makes the pages stay mapped between steps. GPU runs are unaffected
(CUDA has its own caching allocator). BIP_KEEP_HOST_MEMORY=0 turns it off.
"""

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


def enabled():
    """False when the user turned the setting off with BIP_KEEP_HOST_MEMORY=0."""
    return os.environ.get("BIP_KEEP_HOST_MEMORY", "1") != "0"


def keep_freed_memory():
    """Apply the settings above to this process; True if glibc took them (False on other C libraries)."""
    if not enabled():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
