# SPDX-License-Identifier: GPL-2.0-or-later
"""Keep freed working memory for reuse (glibc only).

By default glibc hands a freed block of more than about 128 kB back to the kernel, and the next
allocation of that size page-faults it in again, zeroed. A map is made of thousands of temporaries
of a few MB each (bounded by ``max_memory``), so that churn cost as much system time as the
arithmetic: 7n2h's one-phonon map took about 130,000 page faults and 0.3-0.4 s of system time per
map on 2 cores, against 40,000 faults and 0.13 s with freed blocks of up to 32 MB kept in the heap
(larger ones, such as a whole map, are still returned at once). The setting is process-wide and
permanent; ``ERYX_PORT_MALLOC_TUNING=0`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit systems
_TRIM_THRESHOLD = 256 << 20  # free heap kept: a few working sets of the engine and the contraction


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MB; True when the setting took effect."""
    if os.environ.get("ERYX_PORT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
