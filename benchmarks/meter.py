"""Meter benchmark: the metered path against the direct path, in one run, on loopback.

1. Throughput: wrk, 64 connections, against a trivial upstream (nginx answering 200 itself)
   directly, through the meter (with uvloop and with plain asyncio) and through nginx as a
   reverse proxy with a keep-alive pool (the reference), each proxy alone on one core: the
   requests per second and the proxy's CPU time per request.
2. Added latency: an open-loop generator (fixed request rate, 64 connections, latency
   counted from each request's scheduled time) against the direct path, nginx's and the
   meter's.
3. Soak: mixed traffic (JSON, SSE streams, errors) through the meter; its RSS growth.
4. Streams: OpenAI-style streamed chat completions directly, through a meter that reads
   tokens (TTFT, TPOT, usage) and through one started with --no-openai-metrics: time to
   the first token and the gap between chunks as the client sees them, and the meter's
   CPU time per streamed chunk.

Targets: >= 10,000 requests/s through the meter on one core, added p50 <= 2 x nginx's,
added p99 <= 3 ms, RSS growth < 10 MB over a 10-minute soak.

Run: .venv/bin/python benchmarks/meter.py [--rate 1000] [--soak-seconds 600]
     .venv/bin/python benchmarks/meter.py --streams-only   (part 4 alone, about a minute)
"""

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from modelpilot.advisor.rules import percentile
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import cpu_seconds, wait_until
from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess

CONNECTIONS = 64
CONCURRENT = 8  # streams at once: the client and upstream share one core and must keep up


def ensure_wrk() -> str:
    if wrk := shutil.which("wrk"):
        return wrk
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        return "wrk"
    sys.exit("wrk not found: apt-get install wrk")


def ensure_nginx() -> str:
    if nginx := shutil.which("nginx"):
        return nginx
    if os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "nginx-light"], check=True, capture_output=True
        )
        return "nginx"
    sys.exit("nginx not found: apt-get install nginx-light")


class Nginx:
    """One nginx process (no workers: one process to pin and to measure) on loopback:
    `upstream` answers 200 itself; `proxy_to` makes it a reverse proxy with a keep-alive
    pool, as the meter is."""

    def __init__(self, nginx: str, workdir: Path, proxy_to: str | None = None) -> None:
        self.port = pick_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = workdir / f"nginx-{self.port}"
        (root / "logs").mkdir(parents=True)
        if proxy_to:
            location = (
                "location / { proxy_pass http://up; proxy_http_version 1.1; "
                'proxy_set_header Connection ""; }'
            )
            pool = f"upstream up {{ server {proxy_to.removeprefix('http://')}; keepalive 64; }}"
        else:
            location = 'location / { return 200 "ok\\n"; }'
            pool = ""
        (root / "nginx.conf").write_text(
            "daemon off; master_process off; worker_processes 1; pid nginx.pid; "
            "error_log logs/error.log; events { worker_connections 1024; } "
            f"http {{ access_log off; {pool} server {{ listen 127.0.0.1:{self.port}; "
            f"{location} }} }}\n"
        )
        self.proc = subprocess.Popen([nginx, "-p", str(root), "-c", "nginx.conf"])
        if not wait_until(self.listening, 10, interval=0.05):
            raise RuntimeError(f"nginx did not start: {root}/logs/error.log")

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pin(pid: int, core: int) -> None:
    os.sched_setaffinity(pid, {core})


def cpu_per_request(wrk: str, url: str, seconds: int, pid: int) -> tuple[float, float]:
    """(requests/s, the process' CPU seconds per request) under wrk."""
    before = cpu_seconds(pid)
    rps = wrk_rps(wrk, url, seconds)
    return rps, (cpu_seconds(pid) - before) / (rps * seconds)


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
                samples.append((now - start, meter.rss_kib()))
                next_sample += 10
            task = asyncio.create_task(one(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
            await asyncio.sleep(max(start + i / rate - time.perf_counter(), 0))
        await asyncio.gather(*pending)
    samples.append((time.perf_counter() - start, meter.rss_kib()))
    return samples


@dataclass
class StreamStats:
    ttft: list[float]  # request sent -> first content chunk, per stream (seconds)
    gaps: list[float]  # between consecutive content chunks
    cpu_per_chunk: float | None  # the meter's CPU seconds per content chunk


async def streams(
    url: str, count: int, tokens: int, concurrency: int, pid: int | None
) -> StreamStats:
    """`count` streamed chat completions of `tokens` tokens, `concurrency` at a time."""
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    stats = StreamStats([], [], None)
    chunks = 0
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> None:
            nonlocal chunks
            async with gate:
                sent = time.perf_counter()
                last = None
                async with http.post(url + "/v1/chat/completions", json=body) as resp:
                    async for line in resp.content:
                        if b'"content"' not in line:
                            continue
                        now = time.perf_counter()
                        if last is None:
                            stats.ttft.append(now - sent)
                        else:
                            stats.gaps.append(now - last)
                        last = now
                        chunks += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm the pools
        stats.ttft.clear()
        stats.gaps.clear()
        chunks = 0
        before = cpu_seconds(pid) if pid else 0.0
        await asyncio.gather(*(one() for _ in range(count)))
        if pid:
            stats.cpu_per_chunk = (cpu_seconds(pid) - before) / chunks
    return stats


def stream_report(
    paths: dict[str, tuple[str, int | None]], count: int, tokens: int, rounds: int = 3
) -> list[str]:
    """Each path in turn, `rounds` times interleaved (same traffic; drift hits all alike),
    described against the direct path. CPU per chunk is the median of the rounds."""
    runs: dict[str, list[StreamStats]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, (url, pid) in paths.items():
            runs[name].append(asyncio.run(streams(url, count // rounds, tokens, CONCURRENT, pid)))

    def merged(name: str) -> tuple[float, float, float, float | None]:
        ttft = [t for r in runs[name] for t in r.ttft]
        gaps = [g for r in runs[name] for g in r.gaps]
        cpu = [r.cpu_per_chunk for r in runs[name] if r.cpu_per_chunk is not None]
        return (
            percentile(ttft, 50),
            percentile(ttft, 99),
            sum(gaps) / len(gaps),
            percentile(cpu, 50) if cpu else None,
        )

    d50, _, dgap, _ = merged("direct")
    lines = []
    for name in paths:
        t50, t99, gap, cpu = merged(name)
        added = ""
        if name != "direct":
            added = (
                f" (+{(t50 - d50) * 1000:.2f} ms to the first token, "
                f"{(gap - dgap) * 1e6:+.0f} us per chunk)"
            )
        lines.append(
            f"  {name:24s} TTFT p50 {t50 * 1000:5.2f} ms p99 {t99 * 1000:6.2f} ms, "
            f"chunk gap {gap * 1000:.2f} ms{added}"
            + (f", meter CPU {cpu * 1e6:.0f} us/chunk" if cpu else "")
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="open-loop requests/s")
    parser.add_argument("--latency-seconds", type=float, default=15)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--soak-rate", type=float, default=300)
    parser.add_argument("--streams", type=int, default=400, help="streams per path")
    parser.add_argument("--stream-tokens", type=int, default=64)
    parser.add_argument("--streams-only", action="store_true", help="run part 4 only")
    args = parser.parse_args()
    wrk = ensure_wrk()
    if os.cpu_count() and os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs 2 cores: the meter gets one, the rest the other")
    pin(os.getpid(), 1)  # this process (load generator) and the upstream share core 1

    workdir = Path(tempfile.mkdtemp(prefix="bench-meter-"))
    upstream = FakeModelProcess(
        workdir, base_ms=0, per_request_ms=0, token_ms=5, token_per_request_ms=0
    )
    pin(upstream.proc.pid, 1)
    meters = {
        "uvloop": MeterProcess(workdir, upstream.url),
        "asyncio": MeterProcess(workdir, upstream.url, no_uvloop=True),
        "plain": MeterProcess(workdir, upstream.url, openai_metrics=False),
    }
    try:
        for m in meters.values():
            pin(m.proc.pid, 0)
        print(
            f"streams: {args.streams} OpenAI-style streamed chat completions of "
            f"{args.stream_tokens} tokens per path, {CONCURRENT} at a time (tokens 5 ms apart), "
            "three interleaved rounds:"
        )
        stream_lines = stream_report(
            {
                "direct": (upstream.url, None),
                "meter, tokens not read": (meters["plain"].url, meters["plain"].proc.pid),
                "meter, tokens read": (meters["uvloop"].url, meters["uvloop"].proc.pid),
            },
            args.streams,
            args.stream_tokens,
        )
        print("\n".join(stream_lines))
        meters.pop("plain").stop()
        if args.streams_only:
            return

        # Throughput and latency against a trivial upstream that is never the bottleneck
        # (nginx answering 200 itself, on the load generator's core), through each proxy in
        # turn on core 0: the meter, and nginx as a reverse proxy (the reference).
        nginx = ensure_nginx()
        trivial = Nginx(nginx, workdir)
        pin(trivial.proc.pid, 1)
        proxies = {
            "meter (uvloop)": MeterProcess(workdir, trivial.url),
            "meter (asyncio)": MeterProcess(workdir, trivial.url, no_uvloop=True),
        }
        reference = Nginx(nginx, workdir, proxy_to=trivial.url)
        try:
            pids = {name: m.proc.pid for name, m in proxies.items()}
            pids["nginx (reverse proxy)"] = reference.proc.pid
            urls = {name: m.url for name, m in proxies.items()}
            urls["nginx (reverse proxy)"] = reference.url
            for pid in pids.values():
                pin(pid, 0)
            path = "/status/200"
            print(
                f"throughput, wrk -c{CONNECTIONS} {args.wrk_seconds}s each, each proxy on core 0:"
            )
            direct_rps = wrk_rps(wrk, trivial.url + path, args.wrk_seconds)
            print(f"  direct (upstream alone):      {direct_rps:8.0f} req/s")
            rps, cpu = {}, {}
            for name, url in urls.items():
                rps[name], cpu[name] = cpu_per_request(
                    wrk, url + path, args.wrk_seconds, pids[name]
                )
                print(
                    f"  through {name:22s} {rps[name]:8.0f} req/s, "
                    f"{cpu[name] * 1e6:5.0f} us CPU per request"
                )
            print(
                f"latency, open loop at {args.rate:.0f} req/s, {CONNECTIONS} connections, "
                f"{args.latency_seconds:.0f}s each:"
            )
            lat = {
                "direct": asyncio.run(
                    open_loop(trivial.url + path, args.rate, args.latency_seconds)
                )
            }
            for name in ("nginx (reverse proxy)", "meter (uvloop)"):
                lat[name] = asyncio.run(
                    open_loop(urls[name] + path, args.rate, args.latency_seconds)
                )
            for name, values in lat.items():
                print(
                    f"  {name:22s} p50 {percentile(values, 50) * 1000:.2f} ms  "
                    f"p99 {percentile(values, 99) * 1000:.2f} ms"
                )
        finally:
            for m in proxies.values():
                m.stop()
            reference.stop()
            trivial.stop()
        meter = meters["uvloop"]
        added = {
            name: (
                percentile(lat[name], 50) - percentile(lat["direct"], 50),
                percentile(lat[name], 99) - percentile(lat["direct"], 99),
            )
            for name in ("nginx (reverse proxy)", "meter (uvloop)")
        }

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
    print("  streams (figures above):\n" + "\n".join(stream_lines))
    m50, m99 = added["meter (uvloop)"]
    n50, n99 = added["nginx (reverse proxy)"]
    print(
        f"  added latency: meter p50 {m50 * 1000:+.2f} ms, p99 {m99 * 1000:+.2f} ms; "
        f"nginx p50 {n50 * 1000:+.2f} ms, p99 {n99 * 1000:+.2f} ms "
        f"(target: the meter's p50 <= 2 x nginx's)"
    )
    meter_name, nginx_name = "meter (uvloop)", "nginx (reverse proxy)"
    print(
        f"  one core: meter {rps[meter_name]:.0f} req/s, {cpu[meter_name] * 1e6:.0f} us CPU per "
        f"request (target >= 10,000 req/s); nginx {rps[nginx_name]:.0f} req/s, "
        f"{cpu[nginx_name] * 1e6:.0f} us; meter on plain asyncio {rps['meter (asyncio)']:.0f}; "
        f"direct {direct_rps:.0f}"
    )
    print(
        f"  RSS growth over the soak after warm-up: {growth_mib:+.1f} MiB (target < 10), "
        f"from {warm / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
