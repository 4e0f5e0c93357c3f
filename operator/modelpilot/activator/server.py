"""The activator: one listener per model at zero (its port says which model), requests
held there until a replica is Ready, then sent to that replica's meter.

It watches ModelDeployments (for the ports the operator gave them) and model pods (for
Ready pod IPs), and tells the operator a model is wanted by stamping the ModelDeployment
with `ACTIVATION_ANNOTATION`: the operator's scaler stays the one writer of replicas and
acts on the stamp within a second (no Prometheus scrape in between). Request and response
bodies are relayed, never logged.
"""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import kopf
from aiohttp import web
from prometheus_client import generate_latest
from pydantic import BaseModel, Field

from modelpilot.activator.hold import Holds, QueueFull, ShuttingDown
from modelpilot.activator.metrics import ActivatorMetrics
from modelpilot.activator.routing import Route, Routes, ready_addresses
from modelpilot.api import ACTIVATION_ANNOTATION, GROUP, HELD_ANNOTATION, PLURAL, VERSION, Key
from modelpilot.controller.kopf_session import session_for
from modelpilot.controller.pod_watch import ListWatch, PodWatch
from modelpilot.meter.proxy import HELD_HEADER, HOP_BY_HOP, upstream_headers
from modelpilot.times import format_time

log = logging.getLogger("modelpilot.activator")

SHUTDOWN_SECONDS = 8.0
GATHER_SECONDS = 0.05
REPORT_EVERY = 2.0  # seconds between stamps while a model's requests are still held


class ActivatorConfig(BaseModel):
    namespaces: list[str] = Field(default_factory=list, description="Empty: all namespaces.")
    host: str = Field("0.0.0.0", description="Address the models' ports listen on.")
    metrics_address: str = Field("0.0.0.0:9090", description="host:port of /metrics, /readyz.")
    max_body_bytes: int = Field(64 * 1024 * 1024, description="Largest request body held.")
    keep_alive_seconds: float = Field(
        10.0, gt=0, description="Seconds between SSE comments to a held streaming client."
    )


def wants_events(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _unavailable(why: str, retry_after: int) -> web.Response:
    return web.Response(status=503, text=f"{why}\n", headers={"Retry-After": str(retry_after)})


def _full(route: Route) -> str:
    return f"{route.queue} requests are already waiting for this model to start"


class Activator:
    def __init__(
        self, config: ActivatorConfig, login: Callable[[], kopf.ConnectionInfo | None]
    ) -> None:
        self.config, self.login = config, login
        self.holds = Holds()
        self.metrics = ActivatorMetrics()
        collection = f"/apis/{GROUP}/{VERSION}/{{}}{PLURAL}"
        self.models = ListWatch(login, config.namespaces, self._routed, Routes, collection)
        self.pods = PodWatch(login, config.namespaces, self._changed)
        self.ports: dict[int, Key] = {}  # what each listening port serves
        self._sites: dict[int, web.TCPSite] = {}
        self._refused: set[int] = set()  # ports that could not be listened on
        self._sync = asyncio.Event()
        self._stamped: dict[Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._api: aiohttp.ClientSession | None = None
        self._api_server = ""
        self._upstream: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=config.max_body_bytes)
        app.router.add_route("*", "/{path:.*}", self.handle)
        # Within the pod's 10 s grace period: streams under way get 8 s to finish.
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )

    @property
    def routes(self) -> Routes:
        return self.models.index

    # -- what the watches say --------------------------------------------------------------
    def _changed(self, key: Key) -> None:
        """A model's pods changed: its Ready addresses."""
        pods = self.pods.pods.get(key, ()) if key in self.routes else ()
        self.holds.set_addresses(key, ready_addresses(pods))

    def _routed(self, key: Key) -> None:
        """A model's route changed: its addresses, and the listeners."""
        self._changed(key)
        self._sync.set()

    async def _listen(self) -> None:
        """Keep one listener per routed model."""
        while True:
            await self._sync.wait()
            self._sync.clear()
            wanted = {route.port: key for key, route in self.routes.items()}
            for port in set(self._sites) - set(wanted):
                await self._sites.pop(port).stop()
            for port in sorted(set(wanted) - set(self._sites)):
                site = web.TCPSite(self.runner, self.config.host, port, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    if port not in self._refused:  # said once; tried again on every change
                        log.error(
                            "cannot listen on port %d for %s/%s: %s", port, *wanted[port], exc
                        )
                        self._refused.add(port)
                    continue
                self._refused.discard(port)
                self._sites[port] = site
            self.ports = {port: key for port, key in wanted.items() if port in self._sites}

    # -- the data path ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        key = self.ports.get(sock[1]) if sock else None
        route = self.routes.get(key) if key else None
        if key is None or route is None:
            return web.Response(status=404, text="no model is served on this port\n")
        started = time.monotonic()
        body = await request.read()
        address = self.holds.pick(key)
        stream: web.StreamResponse | None = None
        held = 0.0
        if address is None:
            self._stamp(key)
            if self.holds.held(key) >= route.queue:  # before a stream's 200 is sent
                return await self._refuse(request, key, None, "overflow", _full(route), 5)
            if wants_events(request):
                stream = web.StreamResponse(
                    status=200, headers={"Content-Type": "text/event-stream"}
                )
                await stream.prepare(request)
            gauge = self.metrics.held.labels(*key)
            gauge.inc()
            keep_alive = asyncio.create_task(self._keep_alive(stream)) if stream else None
            try:
                address = await self.holds.wait(key, route.queue, route.timeout)
            except QueueFull:
                return await self._refuse(request, key, stream, "overflow", _full(route), 5)
            except ShuttingDown:
                return await self._refuse(
                    request,
                    key,
                    stream,
                    "closing",
                    "this activator is shutting down: retry (another one takes it)",
                    1,
                )
            except TimeoutError:
                return await self._refuse(
                    request,
                    key,
                    stream,
                    "timeout",
                    f"no replica of this model became ready within {route.timeout:.0f}s",
                    30,
                )
            finally:
                gauge.dec()
                if keep_alive:
                    keep_alive.cancel()
                held = time.monotonic() - started
                self.metrics.hold_time.labels(*key).observe(held)
        return await self._forward(request, body, key, route, address, stream, held)

    async def _keep_alive(self, stream: web.StreamResponse) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await stream.write(b": waiting for a replica to start\n\n")
                await asyncio.sleep(self.config.keep_alive_seconds)

    async def _refuse(
        self,
        request: web.Request,
        key: Key,
        stream: web.StreamResponse | None,
        outcome: str,
        why: str,
        retry_after: int,
    ) -> web.StreamResponse:
        self.metrics.requests.labels(*key, outcome).inc()
        if stream is None:
            return _unavailable(why, retry_after)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await stream.write(f"event: error\ndata: {why}\n\n".encode())
            await stream.write_eof()
        return stream

    async def _forward(
        self,
        request: web.Request,
        body: bytes,
        key: Key,
        route: Route,
        address: str,
        stream: web.StreamResponse | None,
        held: float,
    ) -> web.StreamResponse:
        # The meter's own header filtering; a client's HELD_HEADER is dropped: only the
        # activator says how long it held.
        held_name = HELD_HEADER.lower()
        headers = [
            (k, v)
            for k, v in upstream_headers(request.headers, request.remote)
            if k.lower() != held_name
        ]
        if held:
            headers.append((HELD_HEADER, f"{held:.3f}"))
        url = f"http://{address}:{route.target_port}{request.rel_url}"
        assert self._upstream is not None
        try:
            async with self._upstream.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                if stream is None:
                    stream = web.StreamResponse(
                        status=upstream.status,
                        reason=upstream.reason,
                        headers=[
                            (k, v)
                            for k, v in upstream.headers.items()
                            if k.lower() not in HOP_BY_HOP
                        ],
                    )
                    await stream.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await stream.write(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.metrics.requests.labels(*key, "upstream_error").inc()
            if stream is None:
                return web.Response(
                    status=502,
                    text=f"the replica at {address} did not answer: {type(exc).__name__}\n",
                )
            return stream  # the answer had begun: the client sees it cut short
        self.metrics.requests.labels(*key, "forwarded").inc()
        await stream.write_eof()
        return stream

    # -- telling the operator --------------------------------------------------------------
    def _stamp(self, key: Key) -> None:
        now = time.monotonic()
        if now - self._stamped.get(key, -REPORT_EVERY) < REPORT_EVERY * 0.9:
            return
        self._stamped[key] = now
        task = asyncio.create_task(self._patch(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _patch(self, key: Key) -> None:
        # A burst arrives within milliseconds: the first stamp then counts all of it.
        await asyncio.sleep(GATHER_SECONDS)
        namespace, name = key
        annotations = {
            ACTIVATION_ANNOTATION: format_time(datetime.now(UTC)),
            HELD_ANNOTATION: str(max(self.holds.held(key), 1)),  # how many replicas to wake
        }
        stamp = {"metadata": {"annotations": annotations}}
        url = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        try:
            session = self._api_session()
            async with session.patch(
                self._api_server + url,
                json=stamp,
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if response.status >= 300:
                    log.warning(
                        "could not wake %s/%s: the API server answered %d",
                        namespace,
                        name,
                        response.status,
                    )
                    return
            self.metrics.activations.labels(*key).inc()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("could not wake %s/%s: %s", namespace, name, type(exc).__name__)
            self._stamped.pop(key, None)  # the next request (or the loop) tries again

    async def _restamp(self) -> None:
        """While a model's requests are held, stamp it again every few seconds: a stamp
        lost to a failed patch or an operator failover must not leave them waiting."""
        while True:
            await asyncio.sleep(REPORT_EVERY)
            for key in list(self.routes):
                if self.holds.held(key) and self.holds.pick(key) is None:
                    self._stamp(key)

    def _api_session(self) -> aiohttp.ClientSession:
        if self._api is None:
            info = self.login()
            if info is None:
                raise ValueError("no credentials for the API server")
            self._api_server = info.server.rstrip("/")
            # Many models woken at once stamp at once: room for them in parallel.
            self._api = session_for(info, limit=16)
        return self._api

    # -- running ---------------------------------------------------------------------------
    def ready(self) -> bool:
        return self.models.listed.is_set() and self.pods.listed.is_set()

    async def _health(self) -> web.AppRunner:
        async def readyz(_: web.Request) -> web.Response:
            return web.Response(status=200 if self.ready() else 503, text="ok\n")

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), content_type="text/plain"
            )

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self.config.metrics_address.rpartition(":")
        await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
        return runner

    async def serve(self, stop: asyncio.Event) -> None:
        self._upstream = aiohttp.ClientSession(
            auto_decompress=False,  # bytes through as the model sent them
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            skip_auto_headers=("User-Agent",),
        )
        await self.runner.setup()
        health = await self._health()
        tasks = [
            asyncio.create_task(self.models.run(), name="model-watch"),
            asyncio.create_task(self.pods.run(), name="pod-watch"),
            asyncio.create_task(self._listen(), name="listeners"),
            asyncio.create_task(self._restamp(), name="restamp"),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            # Held requests get 503 + Retry-After now, and their clients retry (through the
            # other activator replica); answers under way get a few seconds to finish.
            for site in list(self._sites.values()):
                await site.stop()
            self.holds.close()
            await self.runner.cleanup()
            await health.cleanup()
            await self._upstream.close()
            if self._api is not None:
                await self._api.close()


def run(config: ActivatorConfig) -> None:
    from modelpilot.controller.kube import load_api_client

    load_api_client(pool_size=1)  # loads in-cluster or KUBECONFIG credentials, or says why
    settings = kopf.OperatorSettings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        activator = Activator(config, lambda: kopf.login_via_client(settings=settings, logger=log))
        await activator.serve(stop)

    asyncio.run(main())
