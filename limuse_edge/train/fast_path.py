"""The trainer's fast path on the CPU (TrainConfig.fast): the training kernels of model/fast.py, and glibc's
allocator told to keep freed memory.

A training step allocates and frees the same few hundred activation tensors every step, many of them
larger than glibc's mmap threshold (32 MB at most: limuse_k32's fusion-stage TAC tensors are 75 MB at
batch 4 x 1 s). Each such allocation is a fresh mmap whose pages fault in zeroed, step after step; on
one TAC block that was half its time. Served from a heap that is never trimmed, they reuse warm pages.
The process then keeps its peak footprint, which a training process reaches every step anyway.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

from limuse_edge.model.fast import fast_kernels

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>


def keep_freed_memory() -> bool:
    """Process-wide and for good: glibc malloc serves every block from its heap and never returns freed
    memory to the system. False where the C library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))


@contextlib.contextmanager
def fast_path(enabled: bool = True):
    """Within this context, training runs the fast kernels (and the allocator keeps freed memory)."""
    if enabled:
        keep_freed_memory()
    with fast_kernels(enabled):
        yield
