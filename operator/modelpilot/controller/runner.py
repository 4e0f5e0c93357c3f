"""Run the operator (what `modelpilot run` does): serve /healthz and /metrics at once, wait
to lead (a Lease, `controller.leader`), then run kopf's handlers and the loops until
stopped, or until the lease is lost, when the process exits before another replica may
take over: exactly one replica writes."""

import asyncio
import logging
import os
import signal

import kopf
from aiohttp import web
from prometheus_client import start_http_server

from modelpilot.controller import handlers  # noqa: F401  (registers the handlers)
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.kube import load_api_client
from modelpilot.controller.leader import Elector, lease_name, lease_namespace, new_identity

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


def run(config: OperatorConfig, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
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


async def _keep(elector: Elector) -> None:
    await elector.keep()
    # Not renewed for the renew deadline: another replica may lead in a few seconds. Stop
    # now, without a graceful shutdown that could still write; Kubernetes restarts us.
    log.error(
        "lost the lease %s/%s: exiting so that only the new leader writes",
        elector.namespace,
        elector.name,
    )
    logging.shutdown()
    os._exit(1)


async def _run(config: OperatorConfig) -> None:
    host, port = split_address(config.metrics_address)
    start_http_server(port, addr=host)
    elector = Elector(
        load_api_client(pool_size=2),
        lease_namespace(config.lease_namespace),
        lease_name(config.selector, config.namespaces),
        new_identity(),
    )
    health = await _serve_health(config.health_address, elector)
    try:
        if not await _lead_or_stop(elector):
            return
        keeper = asyncio.create_task(_keep(elector))
        try:
            await kopf.operator(
                # Leader election above: kopf's own peering (its CRDs) is not needed.
                standalone=True,
                clusterwide=not config.namespaces,
                namespaces=config.namespaces,
                memo=kopf.Memo(config=config, identity=elector.identity),
            )
        finally:
            keeper.cancel()
            await asyncio.to_thread(elector.release)
    finally:
        await health.cleanup()
