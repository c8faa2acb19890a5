"""Host-side tuning for training on CPU."""
from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks for reuse instead of handing them back to the OS.

    By default glibc serves large blocks (a training step's activations: MBs each) with mmap and
    unmaps them when freed, and trims the heap's top, so every step faults its memory back in: about
    a fifth of a CPU step went to the kernel (bench/align_speed.py --ablate measures the gain). The
    process keeps its peak memory instead of shrinking between steps. Returns whether it applied
    (not on other C libraries).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(1 << 30))
                and libc.mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(2**31 - 1)))
