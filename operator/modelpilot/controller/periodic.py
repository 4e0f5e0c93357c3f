"""The operator's periodic loops (scaler, advisor, GPU): what each is given, and a tick
every `interval` seconds; a failing tick is logged and retried next time."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_api_client import PrometheusConnect

from modelpilot.api import Key
from modelpilot.controller.kube import Kube, report_failure
from modelpilot.controller.refs import Indexes
from modelpilot.controller.status_worker import StatusWorker

log = logging.getLogger(__name__)


async def every(interval: float, tick: Callable[[], Awaitable[None]], what: str) -> None:
    while True:
        started = time.monotonic()
        try:
            await tick()
        except Exception as exc:
            report_failure(log, f"{what} failed; next in {interval}s", exc)
        await asyncio.sleep(max(interval - (time.monotonic() - started), 0))


class Isolated:
    """Runs one model's part of a tick so that its failure is logged on its own (with a
    traceback the first time, then one line at most every `quiet` seconds per model) and
    never stops the other models' parts."""

    def __init__(self, what: str, quiet: float = 300) -> None:
        self.what, self.quiet = what, quiet
        self._logged: dict[Key, float] = {}

    async def run(self, key: Key, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            now = time.monotonic()
            last = self._logged.get(key)
            if last is not None and now - last < self.quiet:
                return
            again = " again" if last is not None else ""
            report_failure(log, f"{self.what} of {key[0]}/{key[1]} failed{again}", exc)
            self._logged[key] = now


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

    def __post_init__(self) -> None:
        self.isolated = Isolated(self.what)

    async def run(self) -> None:
        await self.indexes.wait_for_pods()
        await every(self.interval, self.tick, self.what)

    async def tick(self) -> None:
        raise NotImplementedError
