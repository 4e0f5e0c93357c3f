"""Async benchmark: the durable queue against the synchronous path, in one run, on loopback.

A real Redis (append-only file, fsync on every write, as the harness runs it), one meter
with 32 slots in front of a model server that answers at once.

1. Added time from submit to start with a free slot: one request at a time on an idle
   meter, from the client's send to the meter starting it upstream (the job's startedAt),
   p50/p99; beside the synchronous path's added latency (through the meter minus direct).
2. Submissions per second through one meter: 32 clients submitting `Prefer: respond-async`
   requests for `--seconds`, beside 32 clients sending the same request synchronously.

Run: .venv/bin/python benchmarks/async.py [--seconds 10] [--samples 300]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from modelpilot.advisor.rules import percentile
from modelpilot.devcluster.redis import RedisServer
from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess

CLIENTS = 32
BODY = {"input": "x"}


async def closed_loop(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float, want: int
) -> float:
    """Requests per second from CLIENTS clients, each sending as soon as its last answered."""
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with session.post(url, json=BODY, headers=headers) as resp:
                await resp.read()
                assert resp.status == want, resp.status
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done / (time.monotonic() - started)


async def until_idle(meter: MeterProcess) -> None:
    """Polls: the meter is another process, there is nothing in this one to wait on."""
    busy = ("modelpilot_async_queue_size", "modelpilot_concurrent_requests")
    while any(meter.value(name) for name in busy):  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def submit_to_start(
    session: aiohttp.ClientSession, meter: MeterProcess, n: int
) -> list[float]:
    added = []
    for _ in range(n):
        sent = time.time()
        async with session.post(
            f"{meter.url}/predict", json=BODY, headers={"Prefer": "respond-async"}
        ) as resp:
            job = await resp.json()
        while True:
            async with session.get(f"{meter.url}{job['statusUrl']}/status") as resp:
                doc = await resp.json()
            if "startedAt" in doc:
                added.append(doc["startedAt"] - sent)
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)
    return added


async def latency(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, json=BODY) as resp:
            await resp.read()
        out.append(time.perf_counter() - started)
    return out


async def run(args: argparse.Namespace, workdir: Path) -> None:
    broker = RedisServer(workdir)
    model = FakeModelProcess(workdir, base_ms=0, per_request_ms=0)
    meter = MeterProcess(workdir, model.url, async_broker=broker.url, max_concurrency=CLIENTS)
    try:
        connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"{meter.url}/predict"
            await latency(session, url, 50)  # warm both paths
            await submit_to_start(session, meter, 50)
            # Idle first: the added times with a free slot, then the throughput under load.
            direct = await latency(session, f"{model.url}/predict", args.samples)
            metered = await latency(session, url, args.samples)
            started = await submit_to_start(session, meter, args.samples)
            ms = 1000
            sync_p50 = (statistics.median(metered) - statistics.median(direct)) * ms
            sync_p99 = (percentile(metered, 99) - percentile(direct, 99)) * ms
            print(
                f"submit -> start, free slot: p50 {statistics.median(started) * ms:.2f} ms, "
                f"p99 {percentile(started, 99) * ms:.2f} ms  "
                f"(synchronous path's added latency: p50 {sync_p50:.2f} ms, p99 {sync_p99:.2f} ms)"
            )
            sync_rps = await closed_loop(session, url, {}, args.seconds, 200)
            async_rps = await closed_loop(
                session, url, {"Prefer": "respond-async"}, args.seconds, 202
            )
            print(
                f"submissions/s through one meter: async {async_rps:,.0f}  "
                f"(synchronous requests/s, same meter and clients: {sync_rps:,.0f})"
            )
    finally:
        meter.stop()
        model.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
