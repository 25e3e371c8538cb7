"""Handing the memory a long-running process freed back to the system.

A jobs pass reads frames, decodes detector states and builds lists, then frees
them; ingest holds a backlog in its inbox and batches while a store is away,
then writes it and frees it. glibc's allocator keeps freed memory for reuse in
its arenas: the main heap and one arena per thread that allocated, up to eight
per core (APScheduler runs the passes on a pool of up to ten threads; ingest
receives on paho's thread, decodes on its worker and writes on its writer). A
thread arena gives back the free space at its top only beyond a threshold that
glibc raises to twice the largest block NumPy freed (up to 64 MB), and
``malloc_trim`` does not trim the top of a thread arena at all. So a jobs
worker's resident memory climbed, arena by arena, as passes landed on other
threads of the pool, by about 6 MB per arena that held 0.1 to 1.2 MB in use
(``malloc_stats`` of a soak's jobs process).

These processes therefore use one arena (``M_ARENA_MAX`` 1: Python allocates
under its interpreter lock, so threads gain little from arenas of their own)
and call ``malloc_trim(0)`` after work (a jobs pass that did work; ingest's
writer at most every half minute), which returns the free pages of that arena,
its top included. Elsewhere than on glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Trim = Callable[[], bool]
Resident = Callable[[], int | None]


def resident_bytes() -> int | None:
    """This process's resident set size, from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def glibc_trim(*, one_arena: bool = False) -> Trim | None:
    """``malloc_trim(0)`` of the C library this process runs on, if it is glibc.

    ``one_arena``: from now on, threads allocate from the main arena (before threads
    start: arenas created already stay)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    if one_arena:
        libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(1))
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> bool:
        return bool(trim(0))

    return call


@dataclass(frozen=True)
class Released:
    """Resident memory before and after handing freed memory back, in bytes."""

    before: int
    after: int

    @property
    def returned(self) -> int:
        return max(0, self.before - self.after)


class MemoryRelease:
    """After a pass: free pages back to the system, and the resident size for the log line."""

    def __init__(self, *, trim: Trim | None, resident: Resident = resident_bytes) -> None:
        self.trim = trim
        self.resident = resident

    @classmethod
    def here(cls) -> MemoryRelease:
        """For this process, before its threads start: one arena and glibc's trim."""
        return cls(trim=glibc_trim(one_arena=True))

    def after_pass(self) -> Released | None:
        before = self.resident()
        if before is None:
            return None
        if self.trim is not None:
            try:
                self.trim()
            except OSError:  # never fails on glibc; a pass is not failed over it
                log.warning("could not hand freed memory back to the system", exc_info=True)
        after = self.resident()
        return Released(before, before if after is None else after)
