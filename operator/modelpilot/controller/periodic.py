"""Run a tick every `interval` seconds; a failing tick is logged and retried next time."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(interval: float, tick: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        started = time.monotonic()
        try:
            await tick()
        except Exception:
            log.exception("%s failed; next in %ss", what, interval)
        await asyncio.sleep(max(interval - (time.monotonic() - started), 0))
