"""The demo's clients: open-loop streamed chat completions on an on/off pattern, sent to a
model's Service, every outcome recorded."""

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

Endpoints = Callable[[], list[str]]  # host:port of each ready endpoint
# A short streamed chat completion, with usage, as an OpenAI client sends it.
CHAT = json.dumps(
    {
        "model": "sample",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()


@dataclass(frozen=True)
class Pattern:
    """Bursts and quiet spells, each of fixed length. Arrivals are Poisson at the rate of
    the moment: open loop, as users do not wait for each other."""

    burst_rps: float = 40.0
    quiet_rps: float = 3.0
    burst_seconds: float = 20.0
    quiet_seconds: float = 25.0
    bad_share: float = 0.02  # requests with a malformed body (the model answers 400)

    def rate(self, t: float) -> float:
        cycle = self.burst_seconds + self.quiet_seconds
        return self.burst_rps if t % cycle < self.burst_seconds else self.quiet_rps

    def describe(self) -> str:
        return (
            f"{self.burst_rps:g} req/s for {self.burst_seconds:g}s, then "
            f"{self.quiet_rps:g} req/s for {self.quiet_seconds:g}s, repeated"
        )


@dataclass(frozen=True)
class Outcome:
    at: float  # seconds since the traffic started, when the request finished
    seconds: float
    status_class: str  # 2xx, 4xx, 5xx, or "error" (no endpoint, refused, timed out)


@dataclass
class Traffic:
    pattern: Pattern
    endpoints: Endpoints
    path: str = "/v1/chat/completions"
    timeout: float = 30.0
    seed: int = 7
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self, stop: asyncio.Event) -> None:
        """Send requests until `stop` is set, then wait for those in flight."""
        rng = random.Random(self.seed)
        self.started = time.monotonic()
        in_flight: set[asyncio.Task[None]] = set()
        counter = itertools.count()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # A connection per request, as many users each with their own: kube-proxy balances
        # connections, so a kept-alive pool would stay on the pods that existed when it opened.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while not stop.is_set():
                n = next(counter)
                bad = rng.random() < self.pattern.bad_share
                task = asyncio.create_task(self._send(session, n, bad))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await asyncio.sleep(rng.expovariate(self.pattern.rate(self.elapsed())))
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.timeout)

    async def _send(self, session: aiohttp.ClientSession, n: int, bad: bool) -> None:
        begun = time.monotonic()
        targets = self.endpoints()
        if not targets:
            self.outcomes.append(Outcome(self.elapsed(), 0.0, "error"))
            return
        url = f"http://{targets[n % len(targets)]}{self.path}"
        body = b"{not json" if bad else CHAT
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                status_class = f"{resp.status // 100}xx"
        except (aiohttp.ClientError, TimeoutError):
            status_class = "error"
        self.outcomes.append(Outcome(self.elapsed(), time.monotonic() - begun, status_class))
