"""Meter benchmark: the metered path against the direct path, in one run, on loopback.

1. Throughput: wrk, 64 connections, against the trivial upstream directly and through the
   meter, which is pinned to one core (run with uvloop and with plain asyncio).
2. Added latency: an open-loop generator (fixed request rate, 64 connections, latency
   counted from each request's scheduled time) against the direct and the metered path.
3. Soak: mixed traffic (JSON, SSE streams, errors) through the meter; its RSS growth.

Targets: added p50 <= 1 ms, added p99 <= 3 ms, >= 2,000 requests/s through the meter on
one core, RSS growth < 10 MB over a 10-minute soak.

Run: .venv/bin/python benchmarks/meter.py [--rate 1000] [--soak-seconds 600]
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess

CONNECTIONS = 64


def ensure_wrk() -> str:
    if wrk := shutil.which("wrk"):
        return wrk
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        return "wrk"
    sys.exit("wrk not found: apt-get install wrk")


def pin(pid: int, core: int) -> None:
    os.sched_setaffinity(pid, {core})


def wrk_rps(wrk: str, url: str, seconds: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def open_loop(url: str, rate: float, seconds: float) -> list[float]:
    """Latency of GETs sent at a fixed rate, from each one's scheduled start."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(scheduled: float) -> None:
            async with http.get(url) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


async def soak(meter: MeterProcess, seconds: float, rate: float) -> list[tuple[float, int]]:
    """Mixed traffic at `rate`/s; RSS sampled every 10 s."""
    samples: list[tuple[float, int]] = []
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> None:
            kind = i % 20
            if kind < 16:
                async with http.post(f"{meter.url}/predict", json={"input": "x" * 200}) as r:
                    await r.read()
            elif kind < 18:
                async with http.post(
                    f"{meter.url}/v1/completions", json={"stream": True, "max_tokens": 3}
                ) as r:
                    await r.read()
            else:
                async with http.get(f"{meter.url}/status/{404 if kind == 18 else 500}") as r:
                    await r.read()

        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        i = 0
        next_sample = start
        while (now := time.perf_counter()) - start < seconds:
            if now >= next_sample:
                samples.append((now - start, rss_kib(meter.proc.pid)))
                next_sample += 10
            task = asyncio.create_task(one(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
            await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0))
        await asyncio.gather(*pending)
    samples.append((time.perf_counter() - start, rss_kib(meter.proc.pid)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="open-loop requests/s")
    parser.add_argument("--latency-seconds", type=float, default=15)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--soak-rate", type=float, default=300)
    args = parser.parse_args()
    wrk = ensure_wrk()
    if os.cpu_count() and os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs 2 cores: the meter gets one, the rest the other")
    pin(os.getpid(), 1)  # this process (load generator) and the upstream share core 1

    workdir = Path(tempfile.mkdtemp(prefix="bench-meter-"))
    upstream = FakeModelProcess(workdir, base_ms=0, per_request_ms=0, token_ms=5)
    pin(upstream.proc.pid, 1)
    meters = {
        "uvloop": MeterProcess(workdir, upstream.url),
        "asyncio": MeterProcess(workdir, upstream.url, no_uvloop=True),
    }
    try:
        for m in meters.values():
            pin(m.proc.pid, 0)
        path = "/status/200"
        print(f"throughput, wrk -c{CONNECTIONS} {args.wrk_seconds}s each:")
        direct_rps = wrk_rps(wrk, upstream.url + path, args.wrk_seconds)
        print(f"  direct (upstream alone):          {direct_rps:8.0f} req/s")
        rps = {}
        for name, m in meters.items():
            rps[name] = wrk_rps(wrk, m.url + path, args.wrk_seconds)
            print(f"  through the meter ({name:7s}, 1 core): {rps[name]:6.0f} req/s")
        meters.pop("asyncio").stop()
        meter = meters["uvloop"]

        print(
            f"latency, open loop at {args.rate:.0f} req/s, {CONNECTIONS} connections, "
            f"{args.latency_seconds:.0f}s each:"
        )
        direct = asyncio.run(open_loop(upstream.url + path, args.rate, args.latency_seconds))
        metered = asyncio.run(open_loop(meter.url + path, args.rate, args.latency_seconds))
        d50, d99, m50, m99 = (pct(direct, 50), pct(direct, 99), pct(metered, 50), pct(metered, 99))
        print(f"  direct:  p50 {d50 * 1000:.2f} ms  p99 {d99 * 1000:.2f} ms")
        print(f"  metered: p50 {m50 * 1000:.2f} ms  p99 {m99 * 1000:.2f} ms")

        print(f"soak: {args.soak_seconds:.0f}s of mixed traffic at {args.soak_rate:.0f} req/s")
        samples = asyncio.run(soak(meter, args.soak_seconds, args.soak_rate))
        # The first 30 s fill pools, buffers and label sets; growth is measured after them.
        warm = next((kib for t, kib in samples if t >= 30), samples[0][1])
        growth_mib = (samples[-1][1] - warm) / 1024
        print("  RSS MiB every 10 s: " + " ".join(f"{kib / 1024:.1f}" for _, kib in samples))
    finally:
        for m in meters.values():
            m.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print("\nmeter benchmark summary")
    print(
        f"  added latency: p50 {(m50 - d50) * 1000:+.2f} ms (target <= 1), "
        f"p99 {(m99 - d99) * 1000:+.2f} ms (target <= 3)"
    )
    print(
        f"  through the meter on one core: {rps['uvloop']:.0f} req/s (target >= 2000); "
        f"plain asyncio {rps['asyncio']:.0f} (uvloop x{rps['uvloop'] / rps['asyncio']:.2f}); "
        f"direct {direct_rps:.0f}"
    )
    print(
        f"  RSS growth over the soak after warm-up: {growth_mib:+.1f} MiB (target < 10), "
        f"from {warm / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
