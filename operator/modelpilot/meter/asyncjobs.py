"""Async requests on the model's shared, durable queue (see broker.py).

    POST/PUT ... with `Prefer: respond-async`   202 {"id", "status", "statusUrl"}
    GET    /_modelpilot/async/<id>              202 while queued or running; then the model
                                                server's answer (410 if expired or canceled)
    GET    /_modelpilot/async/<id>/status       the request's state, as JSON
    DELETE /_modelpilot/async/<id>              cancel a request that has not started

Every meter of the model serves this API for any request id, and runs queued requests when
it has a free slot (--max-concurrency): the queue is the model's, not the pod's. Without a
broker, `Prefer: respond-async` is a preference the meter does not apply (RFC 7240 lets a
server answer synchronously) and the request is served at once.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from redis.exceptions import RedisError

from modelpilot.meter import asyncoptions, webhooks
from modelpilot.meter.admission import Admission
from modelpilot.meter.broker import TERMINAL, Broker, HookTaken, JobView, NewJob, Taken
from modelpilot.meter.classify import http_class
from modelpilot.meter.config import MeterConfig
from modelpilot.meter.metrics import MeterMetrics
from modelpilot.meter.openai import tokens_in

log = logging.getLogger("modelpilot.meter")

ASYNC_PATH = "/_modelpilot/async/"
HOOK_WORKERS = 4
RETRYABLE = frozenset({502, 503, 504})  # the model server is busy or away: try again later
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    state: str | None  # SUCCEEDED or FAILED; None: try again (another attempt, maybe elsewhere)
    status: int | None
    content_type: str
    result: bytes
    error: str = ""


def classify(status: int) -> str | None:
    if status < 400:
        return "SUCCEEDED"
    return None if status in RETRYABLE else "FAILED"


class AsyncJobs:
    def __init__(
        self,
        config: MeterConfig,
        admission: Admission,
        metrics: MeterMetrics,
        upstream: str,
    ) -> None:
        self.config, self.admission, self.metrics = config, admission, metrics
        self.upstream = upstream
        self.workers = config.max_concurrency or 16
        self.broker: Broker | None = None
        if config.async_broker:
            consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
            self.broker = Broker(
                config.async_broker,
                config.namespace,
                config.model_deployment,
                consumer,
                config.async_visibility_timeout,
                config.async_max_attempts,
                config.async_result_ttl,
            )
        self.webhook_key = (
            webhooks.secret_key(config.async_webhook_secret)
            if config.async_webhook_secret
            else None
        )
        self.draining = False
        self._job_wake = asyncio.Semaphore(0)
        self._hook_wake = asyncio.Semaphore(0)
        self._tasks: list[asyncio.Task[None]] = []
        self._broker_ok = True
        self.session: aiohttp.ClientSession | None = None
        self.hooks: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.broker is not None

    async def start(self, session: aiohttp.ClientSession) -> None:
        if self.broker is None:
            return
        self.session = session
        self.hooks = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        with contextlib.suppress(RedisError, OSError):  # the workers retry until it answers
            await self.broker.ensure_groups()
        self._tasks = [
            asyncio.create_task(self._watch(), name="async-watch"),
            *(asyncio.create_task(self._work(), name="async-work") for _ in range(self.workers)),
            *(asyncio.create_task(self._deliver(), name="webhooks") for _ in range(HOOK_WORKERS)),
        ]
        log.info("async queue on %s (%d workers)", self.broker.where, self.workers)

    async def stop(self) -> None:
        self.draining = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a cancel that a client library swallows must not hang exit
            await asyncio.wait(self._tasks, timeout=5)
        if self.hooks is not None:
            await self.hooks.close()
        if self.broker is not None:
            await self.broker.close()

    async def refresh(self) -> None:
        """Read the model's queue length for /metrics (unknown when the broker is away)."""
        if self.broker is None:
            return
        try:
            self.metrics.async_queue.size = await asyncio.wait_for(self.broker.queued(), 2)
        except (RedisError, OSError, TimeoutError):
            self.metrics.async_queue.size = None

    def _broker_error(self, exc: Exception) -> None:
        if self._broker_ok:  # once per outage, not once per worker per retry
            assert self.broker is not None
            log.warning("async broker %s: %s; retrying", self.broker.where, type(exc).__name__)
        self._broker_ok = False

    def _unavailable(self, exc: Exception) -> web.Response:
        self._broker_error(exc)
        return web.Response(
            status=503,
            headers={"Retry-After": "1"},
            text="async queue unavailable: the broker did not answer; try again\n",
        )

    # -- the API ----------------------------------------------------------------------------
    async def accept(self, request: web.Request, headers: CIMultiDict[str]) -> web.Response:
        assert self.broker is not None
        try:
            options = asyncoptions.parse(
                request.headers,
                self.config.async_max_queue_seconds,
                self.config.async_webhook_hosts,
                webhooks_on=self.webhook_key is not None,
            )
        except asyncoptions.BadOption as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        body = await request.content.read(self.config.async_max_body_bytes + 1)
        if len(body) > self.config.async_max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.config.async_max_body_bytes, actual_size=len(body)
            )
        job = NewJob(
            method=request.method,
            path=request.rel_url.raw_path_qs,
            headers=asyncoptions.forwardable(headers.items()),
            body=body,
            priority=options.priority,
            max_queue_seconds=options.max_queue_seconds,
            webhook=options.webhook,
        )
        try:
            key = request.headers.get(asyncoptions.IDEMPOTENCY_KEY)
            job_id = await self.broker.submit(job, key)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc)
        location = ASYNC_PATH + job_id
        return web.json_response(
            {"id": job_id, "status": "QUEUED", "statusUrl": location},
            status=202,
            headers={"Location": location, "Preference-Applied": "respond-async"},
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """/_modelpilot/async/<id>[/status]: GET a result or state, DELETE to cancel."""
        if self.broker is None:
            raise web.HTTPNotFound(text="async requests are off: this model has no broker\n")
        job_id, _, rest = request.path.removeprefix(ASYNC_PATH).partition("/")
        if not job_id or rest not in ("", "status") or (rest and request.method != "GET"):
            raise web.HTTPNotFound(text=f"no meter endpoint at {request.path}\n")
        if request.method not in ("GET", "DELETE"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE"])
        try:
            if request.method == "DELETE":
                return await self._cancel(job_id)
            view = await self.broker.view(job_id)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc)
        if view is None:
            raise web.HTTPNotFound(text=f"no async request {job_id} (unknown or expired)\n")
        if rest == "status":
            return web.json_response(view.document())
        return self._result(view)

    async def _cancel(self, job_id: str) -> web.Response:
        assert self.broker is not None
        state = await self.broker.cancel(job_id)
        if state is None:
            raise web.HTTPNotFound(text=f"no async request {job_id} (unknown or expired)\n")
        doc = {"id": job_id, "status": state}
        if state == "CANCELED":
            return web.json_response(doc)
        return web.json_response(
            {**doc, "error": f"only a QUEUED request can be canceled; this one is {state}"},
            status=409,
        )

    @staticmethod
    def _result(view: JobView) -> web.Response:
        if view.state not in TERMINAL:
            return web.json_response(view.document(), status=202)
        if view.status is None:  # never answered: expired, canceled, or out of attempts
            return web.json_response(view.document(), status=502 if view.state == "FAILED" else 410)
        return web.Response(
            status=view.status,
            body=view.result,
            content_type=None,
            headers={
                "Content-Type": view.content_type or "application/octet-stream",
                "X-Modelpilot-Async-Id": view.id,
                "X-Modelpilot-Async-Status": view.state,
            },
        )

    # -- running jobs -----------------------------------------------------------------------
    async def _watch(self) -> None:
        """Wake idle workers when work is added (an XREAD that blocks on the streams)."""
        assert self.broker is not None
        while not self.draining:
            try:
                jobs, hooks = await self.broker.wait_for_work(block_seconds=5)
                self._broker_ok = True
            except (RedisError, OSError) as exc:
                self._broker_error(exc)
                await asyncio.sleep(1)
                continue
            for _ in range(min(jobs, self.workers)):
                self._job_wake.release()
            for _ in range(min(hooks, HOOK_WORKERS)):
                self._hook_wake.release()

    async def _idle(self, wake: asyncio.Semaphore) -> None:
        """Until woken, or half a visibility timeout: work a meter stopped holding must be
        found even when nothing new arrives."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.acquire(), self.config.async_visibility_timeout / 2)

    async def _work(self) -> None:
        assert self.broker is not None
        while not self.draining:
            while not self.draining:
                await self.admission.hold()  # a free slot first: only then take work
                try:
                    taken = await self.broker.take()
                except (RedisError, OSError) as exc:
                    self.admission.unhold()
                    self._broker_error(exc)
                    await asyncio.sleep(1)
                    continue
                if taken is None:
                    self.admission.unhold()
                    break
                self.admission.activate()
                try:
                    await self._run(taken)
                except (RedisError, OSError, aiohttp.ClientError, ValueError) as exc:
                    # Left pending: taken again after the visibility timeout, and FAILED once
                    # out of attempts. The worker itself must survive any one request.
                    log.warning("async request %s: %s", taken.id, type(exc).__name__)
                finally:
                    self.admission.release()
            await self._idle(self._job_wake)

    @contextlib.asynccontextmanager
    async def _holding(self, renew: Callable[[], Awaitable[bool]]) -> AsyncIterator[None]:
        """Renew our hold on an entry every third of the visibility timeout meanwhile."""

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.config.async_visibility_timeout / 3)
                with contextlib.suppress(RedisError, OSError):
                    await renew()

        task = asyncio.create_task(keep())
        try:
            yield
        finally:
            task.cancel()

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """A broker write that must not be lost to a broker restart: retried for up to a
        visibility timeout (after that the entry is taken again anyway)."""
        deadline = time.monotonic() + max(self.config.async_visibility_timeout, 5)
        while True:
            try:
                return await write()
            except (RedisError, OSError) as exc:
                self._broker_error(exc)
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.5)

    async def _run(self, taken: Taken) -> None:
        assert self.broker is not None
        broker = self.broker
        started = time.time()
        if taken.fresh:
            self.metrics.time_in_async_queue.labels(self.metrics.model).observe(
                max(started - taken.enqueued, 0)
            )
        async with self._holding(lambda: broker.renew(taken.stream, taken.entry)):
            outcome = await self._call(taken)
            if outcome.state is None:  # left pending: taken again after the visibility timeout
                await self._persist(lambda: broker.note_error(taken.id, outcome.error))
                return
            state = outcome.state
            first = await self._persist(
                lambda: broker.finish(
                    taken,
                    state,
                    outcome.status,
                    outcome.content_type,
                    outcome.result,
                    outcome.error,
                )
            )
        if not first:
            return  # another meter finished it (or the broker stayed away): counted there
        done = time.time()
        self.metrics.record(
            status_code=outcome.status or 502,
            status_class=http_class(outcome.status or 502),
            is_async=True,
            end_to_end=done - taken.enqueued,
            ttfb=None,
            inference=done - started,
            request_bytes=len(taken.body),
            response_bytes=len(outcome.result),
            tokens=tokens_in(
                taken.method,
                taken.path.partition("?")[0],
                outcome.status or 502,
                outcome.content_type,
                outcome.result,
            )
            if self.config.openai_metrics and outcome.status
            else None,
        )

    async def _call(self, taken: Taken) -> Outcome:
        assert self.session is not None
        try:
            async with self.session.request(
                taken.method,
                self.upstream + taken.path,
                headers=CIMultiDict(taken.headers),
                data=taken.body,
                allow_redirects=False,
            ) as resp:
                result = await resp.read()
                content_type = resp.headers.get("Content-Type", "application/octet-stream")
                state = classify(resp.status)
                error = "" if state else f"model server answered {resp.status}"
                return Outcome(state, resp.status, content_type, result, error)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Outcome(None, None, "", b"", f"model server failed: {type(exc).__name__}")

    # -- webhooks ---------------------------------------------------------------------------
    async def _deliver(self) -> None:
        assert self.broker is not None
        while not self.draining:
            try:
                hook = await self.broker.take_hook()
            except (RedisError, OSError) as exc:
                self._broker_error(exc)
                await asyncio.sleep(1)
                continue
            if hook is None:
                await self._idle(self._hook_wake)
                continue
            await self._send(hook)

    async def _send(self, hook: HookTaken) -> None:
        """POST the outcome until the receiver takes it (2xx) or attempts run out; the
        attempts count across meters (a meter that stops mid-way leaves the rest)."""
        assert self.broker is not None and self.hooks is not None
        broker, key = self.broker, self.webhook_key or b""
        body = webhooks.payload(
            hook.id, hook.state, hook.status, hook.content_type, hook.result, hook.error
        )
        attempt, limit = hook.attempts, self.config.async_webhook_attempts
        async with self._holding(lambda: broker.renew_hook(hook)):
            while attempt < limit:
                attempt += 1
                await self._persist(lambda: broker.count_hook_attempt(hook))
                try:
                    async with self.hooks.post(
                        hook.url, data=body, headers=webhooks.headers(key, hook.id, body)
                    ) as resp:
                        delivered = 200 <= resp.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    delivered = False
                if delivered:
                    self.metrics.webhooks.labels(self.metrics.model, "delivered").inc()
                    await self._persist(lambda: broker.hook_done(hook, "delivered"))
                    return
                if attempt < limit:
                    self.metrics.webhooks.labels(self.metrics.model, "retried").inc()
                    base = self.config.async_webhook_backoff
                    await asyncio.sleep(webhooks.backoff(attempt, base))
        self.metrics.webhooks.labels(self.metrics.model, "gave_up").inc()
        log.warning("webhook for async request %s: gave up after %d attempts", hook.id, limit)
        await self._persist(lambda: broker.hook_done(hook, "gave_up"))
