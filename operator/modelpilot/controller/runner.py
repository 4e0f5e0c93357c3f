"""Run the operator (what `modelpilot run` does): serve /healthz and /metrics at once, wait
to lead (a Lease, `controller.leader`), then run kopf's handlers and the loops until
stopped. A leader that cannot renew its lease (the API server unreachable, a partition)
stops them before another replica may lead, and becomes a candidate again: exactly one
replica writes."""

import asyncio
import logging
import os
import signal
import time

import kopf
from aiohttp import web
from kubernetes import client
from prometheus_client import start_http_server

from modelpilot.api import GROUP, PLURAL, VERSION
from modelpilot.controller import (
    handlers,  # noqa: F401  (registers the handlers)
    kopf_toggles,
)
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.kube import load_api_client
from modelpilot.controller.leader import (
    Elector,
    Timing,
    lease_name,
    lease_namespace,
    new_identity,
)

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


def run(config: OperatorConfig, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf_toggles.install()
    asyncio.run(_run(config))


async def _serve_health(address: str, elector: Elector) -> web.AppRunner:
    """/healthz: alive, and whether this replica leads (200 either way: a standby is
    healthy)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "leader": elector.leading,
                "identity": elector.identity,
                "lease": f"{elector.namespace}/{elector.name}",
            }
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_address(address)
    await web.TCPSite(runner, host, port).start()
    return runner


async def _lead_or_stop(elector: Elector) -> bool:
    """Wait to lead; False when told to stop first (SIGTERM or SIGINT on a standby)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiting = asyncio.create_task(elector.acquire())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)  # kopf takes the signals over from here
    for task in (waiting, stopping):
        task.cancel()
    return elector.leading


async def _keep(elector: Elector, stop: asyncio.Event) -> None:
    """Renew the lease; once it could not be renewed in time, stop the writers (kopf's
    handlers and the loops) before another replica may lead, and become a candidate
    again. A shutdown that does not finish in time ends the process instead."""
    await elector.keep()
    lease = f"{elector.namespace}/{elector.name}"
    log.error("lost the lease %s: stopping the handlers and loops; a candidate again", lease)
    stop.set()
    await asyncio.sleep(max(elector.timing.lease - elector.timing.renew_deadline - 1, 0.5))
    log.error("the handlers did not stop before the lease ran out: exiting")
    logging.shutdown()
    os._exit(1)


async def _until_served(api: client.ApiClient, stop: asyncio.Event, seconds: float = 60) -> None:
    """Wait (leading) until the API server serves ModelDeployments: just after it starts,
    it answers before its CRDs are back in discovery, and kopf, finding the resource
    missing then, would never watch it (it may not watch CRDs to notice them return)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            found = await asyncio.to_thread(
                client.CustomObjectsApi(api).get_api_resources, GROUP, VERSION
            )
            if any(r.name == PLURAL for r in found.resources):
                return
        except Exception as exc:  # not served yet (404) or not reachable: wait and ask again
            log.debug("ModelDeployments not served yet: %s", type(exc).__name__)
        await asyncio.sleep(1)
    log.warning("ModelDeployments not served after %.0f s: starting anyway", seconds)


async def _run(config: OperatorConfig) -> None:
    host, port = split_address(config.metrics_address)
    start_http_server(port, addr=host)
    api = load_api_client(pool_size=2)
    elector = Elector(
        api,
        lease_namespace(config.lease_namespace),
        lease_name(config.selector, config.namespaces),
        new_identity(),
        Timing(config.lease_duration_seconds),
    )
    health = await _serve_health(config.health_address, elector)
    try:
        while await _lead_or_stop(elector):
            lost = asyncio.Event()
            keeper = asyncio.create_task(_keep(elector, lost))
            try:
                await _until_served(api, lost)
                await kopf.operator(
                    # Leader election above: kopf's own peering (its CRDs) is not needed.
                    standalone=True,
                    clusterwide=not config.namespaces,
                    namespaces=config.namespaces,
                    stop_flag=lost,
                    memo=kopf.Memo(config=config, identity=elector.identity),
                )
            finally:
                keeper.cancel()
            if not lost.is_set():  # stopped by a signal: hand the lease over, and end
                await asyncio.to_thread(elector.release)
                return
    finally:
        await health.cleanup()
