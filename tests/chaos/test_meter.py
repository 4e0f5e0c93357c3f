"""The meter under 20,000 requests while clients hang up before their answer and the model
server is killed twice: every request is counted (by what happened to it), the in-flight
gauges come back to 0, and its memory stays flat."""

import asyncio
import random
from pathlib import Path

import aiohttp

from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess

from .conftest import figures

REQUESTS = 20_000
CLIENTS = 64
HANG_UP_EVERY = 10  # one request in ten is abandoned before its answer


async def test_meter_counts_everything_through_hang_ups_and_model_kills(tmp_path: Path) -> None:
    def restart(port: int | None = None) -> FakeModelProcess:
        return FakeModelProcess(tmp_path, port, base_ms=2, per_request_ms=0)

    model = restart()
    meter = MeterProcess(tmp_path, model.url)
    rng = random.Random(6)
    sent, outcomes = 0, {"ok": 0, "hung up": 0, "error status": 0}
    kills = {REQUESTS // 3, 2 * REQUESTS // 3}
    rss: list[int] = []
    lock = asyncio.Lock()

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        nonlocal sent, model
        if i in kills:  # the model server dies, and comes back on its port a moment later
            async with lock:
                model.proc.kill()
                await asyncio.sleep(0.3)
                model = await asyncio.to_thread(
                    FakeModelProcess, tmp_path, model.port, base_ms=2, per_request_ms=0
                )
        if i % 2000 == 0:
            rss.append(meter.rss_kib())
        sent += 1
        if i % HANG_UP_EVERY == 0:  # a client that gives up before the answer
            status = await hang_up(f"/slow?seconds={rng.uniform(0.05, 0.3):.2f}")
            if status is None:
                outcomes["hung up"] += 1
                return
        else:
            async with http.post(f"{meter.url}/predict", json={"input": i}) as resp:
                await resp.read()
            status = resp.status
        # Answered (a /slow too, when the model was down and the meter said 502 at once).
        outcomes["ok" if status == 200 else "error status"] += 1

    async def hang_up(path: str) -> int | None:
        """GET path and hang up 20 ms after the request has gone: None, or the status of an
        answer that came sooner. The clock starts once the request is written: a client
        timing out before it sends anything (CI's loaded cores, twice) is no request."""
        reader, writer = await asyncio.open_connection("127.0.0.1", meter.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: meter\r\n\r\n".encode())
            await writer.drain()
            try:
                status_line = await asyncio.wait_for(reader.readline(), 0.02)
            except TimeoutError:
                return None
            return int(status_line.split()[1])  # HTTP/1.1 502 Bad Gateway
        finally:
            writer.close()

    async def worker(http: aiohttp.ClientSession, start: int) -> None:
        for i in range(start, REQUESTS, CLIENTS):
            await one(http, i)

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as http:
            await asyncio.gather(*(worker(http, c) for c in range(CLIENTS)))
        # A hung-up request is counted when its upstream call ends on the meter's side (up
        # to 0.3 s on, longer on a loaded machine): wait until all are, or 15 s.
        answered = sum(outcomes.values())
        await asyncio.to_thread(
            wait_until, lambda: meter.value("modelpilot_requests_total") >= answered, 15, 0.1
        )
        counted = meter.value("modelpilot_requests_total")
        by_class = {
            cls: meter.value("modelpilot_requests_total", status_class=cls)
            for cls in ("2xx", "4xx", "5xx")
        }
        in_flight = meter.value("modelpilot_concurrent_requests")
        rss.append(meter.rss_kib())
    finally:
        meter.stop()
        model.stop()
    # One request per iteration: answered, or abandoned (the meter counts that as 499).
    clients_sent = outcomes["ok"] + outcomes["error status"] + outcomes["hung up"]
    assert clients_sent == REQUESTS
    assert counted == clients_sent, (counted, outcomes, by_class)
    assert in_flight == 0
    growth = (rss[-1] - rss[1]) / 1024  # after warm-up
    figures(
        f"meter: {REQUESTS:,} requests, {CLIENTS} clients, hang-ups, model killed twice",
        counted=f"{counted:,.0f} of {clients_sent:,}",
        by_class={k: int(v) for k, v in by_class.items()},
        client_outcomes=outcomes,
        in_flight_after=int(in_flight),
        rss=f"{rss[1] / 1024:.1f} -> {rss[-1] / 1024:.1f} MiB",
    )
    assert growth < 10
