"""Run the meter: the proxy on --listen; /metrics, /healthz and /readyz on --metrics-listen.

SIGTERM drains: readiness turns false first (so the Service stops sending new work), the
listener closes, in-flight requests finish for up to --drain-timeout, then exit 0.
"""

import asyncio
import logging
import signal
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelpilot.meter.concurrency import ConcurrencyTracker
from modelpilot.meter.config import MeterConfig
from modelpilot.meter.metrics import MeterMetrics
from modelpilot.meter.proxy import Proxy

log = logging.getLogger("modelpilot.meter")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


class Meter:
    def __init__(self, config: MeterConfig) -> None:
        self.config = config
        self.tracker = ConcurrencyTracker()
        self.metrics = MeterMetrics(config.model_deployment, self.tracker)
        self.proxy = Proxy(config, self.metrics, self.tracker)
        self.draining = False
        self._ready_cache: tuple[float, bool] = (0.0, False)

    async def _metrics(self, _: web.Request) -> web.Response:
        await self.proxy.jobs.refresh()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.draining:
            return web.Response(status=503, text="draining\n")
        checked, ready = self._ready_cache
        if time.monotonic() - checked > 1.0:  # probes from several places share one check
            ready = await self.proxy.upstream_ready()
            self._ready_cache = (time.monotonic(), ready)
        if not ready:
            return web.Response(status=503, text="model server not ready\n")
        return web.Response(text="ready\n")

    async def serve(self, stop: asyncio.Event) -> None:
        await self.proxy.start()
        proxy_app = web.Application(client_max_size=0)
        proxy_app.router.add_route("*", "/{tail:.*}", self.proxy.handle)
        admin_app = web.Application()
        admin_app.router.add_get("/metrics", self._metrics)
        admin_app.router.add_get("/healthz", self._healthz)
        admin_app.router.add_get("/readyz", self._readyz)

        # handler_cancellation: a client that disconnects cancels its request upstream too.
        proxy_runner = web.AppRunner(proxy_app, handler_cancellation=True, access_log=None)
        admin_runner = web.AppRunner(admin_app, access_log=None)
        await proxy_runner.setup()
        await admin_runner.setup()
        proxy_site = web.TCPSite(proxy_runner, *_split(self.config.listen), backlog=1024)
        await proxy_site.start()
        await web.TCPSite(admin_runner, *_split(self.config.metrics_listen)).start()
        log.info(
            "meter for %s: %s -> %s, metrics on %s",
            self.config.model_deployment,
            self.config.listen,
            self.config.upstream,
            self.config.metrics_listen,
        )
        try:
            await stop.wait()
            self.draining = self.proxy.jobs.draining = True  # no new async work either
            await proxy_site.stop()  # no new connections
            await self._drain()
            if self.proxy.in_flight:
                log.warning("drain timeout: %d requests still in flight", self.proxy.in_flight)
            else:
                log.info("drained")
        finally:
            await proxy_runner.cleanup()
            await admin_runner.cleanup()
            await self.proxy.close()

    async def _drain(self) -> None:
        """Wait for in-flight requests to finish, for at most --drain-timeout."""
        deadline = time.monotonic() + self.config.drain_timeout
        while self.proxy.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling is fine: it runs once, at shutdown


def run(config: MeterConfig, use_uvloop: bool = True) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Meter(config).serve(stop)

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
