"""The operator's periodic loops (scaler, advisor, GPU): what each is given, and a tick
every `interval` seconds; a failing tick is logged and retried next time."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_api_client import PrometheusConnect

from modelpilot.controller.kube import Kube
from modelpilot.controller.refs import Indexes
from modelpilot.controller.status_worker import StatusWorker

log = logging.getLogger(__name__)


async def every(interval: float, tick: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        started = time.monotonic()
        try:
            await tick()
        except Exception:
            log.exception("%s failed; next in %ss", what, interval)
        await asyncio.sleep(max(interval - (time.monotonic() - started), 0))


@dataclass
class Loop:
    """A loop reads kopf's indexes and Prometheus (fetch), decides with pure functions,
    and writes through the Kube client and the status worker."""

    kube: Kube
    prometheus: PrometheusConnect | None
    worker: StatusWorker
    indexes: Indexes
    interval: float

    what = "tick"  # how the log names a tick

    async def run(self) -> None:
        await every(self.interval, self.tick, self.what)

    async def tick(self) -> None:
        raise NotImplementedError
