"""Handing the memory a job pass freed back to the system.

A pass reads frames, decodes detector states and builds lists, then frees them.
glibc's allocator keeps freed memory in its arenas for reuse (the main heap and
one arena per thread that allocated, up to eight per core: APScheduler runs the
passes on a pool of up to ten threads), so the process's resident memory follows
the largest pass each arena has served, not what is in use. ``malloc_trim(0)``
gives the free pages of every arena back; it is called after each pass that did
work. Elsewhere than on glibc (musl, macOS) there is nothing to call and nothing
is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("analytics.jobs")

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


def glibc_trim() -> Trim | None:
    """``malloc_trim(0)`` of the C library this process runs on, if it is glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
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
        """For this process: glibc's trim where there is one."""
        return cls(trim=glibc_trim())

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
