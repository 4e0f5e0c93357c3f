"""Concurrent requests, exactly: counts by state and their integral over time.

`seconds[state]` grows by count x elapsed time between every change, so the rate() of the
exported counter is the true time-averaged concurrency over any window, not a sample.
"""

import time
from collections.abc import Callable

STATES = ("active", "queued")


class ConcurrencyTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.counts = dict.fromkeys(STATES, 0)
        self.seconds = dict.fromkeys(STATES, 0.0)

    def _advance(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        for state, count in self.counts.items():
            self.seconds[state] += count * elapsed
        self._last = now

    def change(self, state: str, delta: int) -> None:
        self._advance()
        self.counts[state] += delta

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        """Counts now, and the integral up to now."""
        self._advance()
        return dict(self.counts), dict(self.seconds)

    @property
    def in_flight(self) -> int:
        return sum(self.counts.values())
