"""Async requests (`Prefer: respond-async`): accepted at once with 202 and an id, run when
a slot is free, the result kept for `async_result_ttl` seconds at /_modelpilot/async/<id>.

This is how a long batch job avoids holding a client connection open; the queue's length
and the time spent in it are the backpressure signals the advisor reads.
"""

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from modelpilot.meter.admission import Admission
from modelpilot.meter.classify import http_class
from modelpilot.meter.metrics import MeterMetrics
from modelpilot.meter.openai import tokens_in

ASYNC_PATH = "/_modelpilot/async/"


@dataclass
class Job:
    id: str
    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes
    enqueued: float
    state: str = "queued"  # queued -> running -> done
    status: int = 0
    content_type: str = "application/octet-stream"
    result: bytes = b""
    done_at: float = 0.0


class AsyncJobs:
    def __init__(
        self,
        admission: Admission,
        metrics: MeterMetrics,
        upstream: str,
        max_body: int,
        ttl: float,
        workers: int,
        openai: bool = True,
    ) -> None:
        self.admission, self.metrics, self.upstream = admission, metrics, upstream
        self.openai = openai
        self.max_body, self.ttl, self.workers = max_body, ttl, workers
        self.queue: deque[Job] = deque()
        self.jobs: dict[str, Job] = {}
        self._ready = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    def start(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        return sum(1 for job in self.jobs.values() if job.state != "done")

    async def accept(self, request: web.Request, headers: CIMultiDict[str]) -> web.Response:
        body = await request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=len(body))
        self._expire()
        job = Job(
            id=secrets.token_hex(12),
            method=request.method,
            path_qs=request.rel_url.raw_path_qs,
            headers=headers,
            body=body,
            enqueued=time.monotonic(),
        )
        self.jobs[job.id] = job
        async with self._ready:
            self.queue.append(job)
            self.metrics.async_queue.size = len(self.queue)
            self._ready.notify()
        location = ASYNC_PATH + job.id
        return web.json_response(
            {"id": job.id, "status": "queued", "statusUrl": location},
            status=202,
            headers={"Location": location},
        )

    def result(self, job_id: str) -> web.Response:
        job = self.jobs.get(job_id)
        if job is None:
            raise web.HTTPNotFound(text=f"no async request {job_id} (unknown or expired)\n")
        if job.state != "done":
            return web.json_response({"id": job.id, "status": job.state}, status=202)
        return web.Response(
            status=job.status,
            body=job.result,
            content_type=None,
            headers={"Content-Type": job.content_type, "X-Modelpilot-Async-Id": job.id},
        )

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for job_id in [
            j.id for j in self.jobs.values() if j.state == "done" and j.done_at < cutoff
        ]:
            del self.jobs[job_id]

    async def _work(self) -> None:
        while True:
            async with self._ready:
                await self._ready.wait_for(lambda: bool(self.queue))
                job = self.queue.popleft()
                self.metrics.async_queue.size = len(self.queue)
            await self.admission.acquire_patiently()
            try:
                await self._run(job)
            finally:
                self.admission.release()

    async def _run(self, job: Job) -> None:
        assert self.session is not None
        started = time.monotonic()
        self.metrics.time_in_async_queue.labels(self.metrics.model).observe(started - job.enqueued)
        job.state = "running"
        try:
            async with self.session.request(
                job.method,
                self.upstream + job.path_qs,
                headers=job.headers,
                data=job.body,
                allow_redirects=False,
            ) as resp:
                job.result = await resp.read()
                job.status = resp.status
                job.content_type = resp.headers.get("Content-Type", job.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            job.status = 504 if isinstance(exc, TimeoutError) else 502
            job.result = f"model server failed: {type(exc).__name__}\n".encode()
            job.content_type = "text/plain"
        job.state, job.done_at = "done", time.monotonic()
        self.metrics.record(
            status_code=job.status,
            status_class=http_class(job.status),
            is_async=True,
            end_to_end=job.done_at - job.enqueued,
            ttfb=None,
            inference=job.done_at - started,
            request_bytes=len(job.body),
            response_bytes=len(job.result),
            tokens=tokens_in(
                job.method,
                job.path_qs.partition("?")[0],
                job.status,
                job.content_type,
                job.result,
            )
            if self.openai
            else None,
        )
