"""Giving freed heap memory back to the kernel, where glibc's `free` keeps it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def release_free_heap() -> None:
    """Returns glibc's free heap memory to the kernel (`malloc_trim(0)`); a no-op without glibc.

    glibc serves blocks below its mmap threshold (which grows with the blocks freed, up to 32 MB) from its heap, and
    small allocations made between a free and the next allocation split the freed space: tensors of a few MB made
    and dropped one after another (a ViT-H's float32 init, one weight at a time) then grow the resident set by their
    total, though at most one is alive.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
