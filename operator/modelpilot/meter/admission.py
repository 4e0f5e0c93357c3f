"""--max-concurrency: requests past the limit wait in a bounded queue, up to a timeout."""

import asyncio
from collections.abc import Awaitable

from modelpilot.meter.concurrency import ConcurrencyTracker


class Rejected(Exception):
    """The request could not get a slot: the queue is full or the wait timed out."""


class Admission:
    def __init__(
        self,
        tracker: ConcurrencyTracker,
        max_concurrency: int,
        max_queue: int,
        queue_timeout: float,
    ) -> None:
        self.tracker = tracker
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.queue_timeout = queue_timeout
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None

    async def acquire(self) -> None:
        """Take a slot (counted active); when all are taken, wait in the bounded queue for
        at most `queue_timeout` seconds."""
        if self._slots is not None and self._slots.locked():
            if self.tracker.counts["queued"] >= self.max_queue:
                raise Rejected(
                    f"queue full: {self.max_queue} requests already waiting for "
                    f"one of {self.max_concurrency} slots"
                )
            try:
                await self._queued(asyncio.wait_for(self._slots.acquire(), self.queue_timeout))
            except TimeoutError:
                raise Rejected(
                    f"no slot free after {self.queue_timeout:g}s in the queue "
                    f"({self.max_concurrency} requests in flight)"
                ) from None
        elif self._slots is not None:
            await self._slots.acquire()
        self.tracker.change("active", +1)

    async def hold(self) -> None:
        """Take a slot without counting a request yet (an async worker about to look for
        work): `activate` when it found some, `unhold` when it did not."""
        if self._slots is not None:
            await self._slots.acquire()

    def unhold(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def activate(self) -> None:
        self.tracker.change("active", +1)

    async def _queued(self, wait: Awaitable[object]) -> None:
        self.tracker.change("queued", +1)
        try:
            await wait
        finally:
            self.tracker.change("queued", -1)

    def release(self) -> None:
        self.tracker.change("active", -1)
        if self._slots is not None:
            self._slots.release()
