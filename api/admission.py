"""Admission control: requests wait for a database slot in the event loop, not in a thread.

A request that uses the database runs its sync dependencies and route in
AnyIO's worker threads (40 by default) and checks out a pooled connection
(5 + 10 overflow by default). With more requests than connections, the
threads wait in the pool's checkout; the requests holding connections then
need threads too (for the route, for the transaction's teardown) and find
none, so everything stalls until checkouts time out after 30 s: with
``vigil bench api --clients 100`` the health list got 0.6 req/s, 100 requests
failing at the clients' 30 s timeout (``api/README.md``, "Under load").

So a request first takes one of as many slots as the pool has connections,
waiting in the event loop, where waiting costs no thread. It holds the slot
until its transaction is torn down, so its checkout finds a connection free.
One that finds no slot within ``api.admission_wait_s`` is answered 503
``overloaded`` with ``Retry-After``, rather than later than any client waits.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

# Threads beyond the slots, so the transactions of admitted requests and the routes that
# need no database always find a worker thread.
SPARE_THREADS = 10

# A semaphore belongs to the event loop it was first used in: one per loop and admission.
_semaphores: RunVar[WeakKeyDictionary[Admission, anyio.Semaphore]] = RunVar(
    "vigil_admission_semaphores")


class Overloaded(Exception):
    """No database slot freed in time: the server is busier than it can answer."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is overloaded; try again shortly")
        self.retry_after = retry_after


class Admission:
    """``slots`` requests at a time in the database; others wait up to ``wait_s`` seconds."""

    def __init__(self, slots: int, wait_s: float) -> None:
        if slots < 1:
            raise ValueError(f"admission needs at least one slot, got {slots}")
        if not wait_s > 0:
            raise ValueError(f"admission_wait_s must be positive, got {wait_s}")
        self.slots = slots
        self.wait_s = wait_s

    def _semaphore(self) -> anyio.Semaphore:
        table = _semaphores.get(None)
        if table is None:
            table = WeakKeyDictionary()
            _semaphores.set(table)
        semaphore = table.get(self)
        if semaphore is None:
            semaphore = table[self] = anyio.Semaphore(self.slots, max_value=self.slots)
        return semaphore

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait: about as long as the queue took to refuse it."""
        return max(1, math.ceil(self.wait_s))

    async def acquire(self) -> None:
        """Take a slot, or raise ``Overloaded`` after ``wait_s`` seconds without one.

        AnyIO's semaphore serves waiters in order and gives no slot to one cancelled
        while waiting, so a client that goes away leaves the count as it was; it is
        bounded by ``slots``, so a slot given back twice raises rather than adding one.
        """
        semaphore = self._semaphore()
        try:
            # A free slot is taken without a cancel scope: 7 us a slot taken and given back,
            # against 24 us through move_on_after (100,000 in a loop).
            semaphore.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        with anyio.move_on_after(self.wait_s):
            await semaphore.acquire()
            return
        raise Overloaded(self.retry_after)

    def release(self) -> None:
        self._semaphore().release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A slot for the block, released once however the block ends."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def raise_thread_limit(self) -> None:
        """Give AnyIO's default thread limiter (this event loop's) room for every slot.

        Called at startup, in the server's event loop.
        """
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, self.slots + SPARE_THREADS)
