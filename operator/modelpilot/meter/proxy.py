"""The reverse proxy: forward every request to the model server, streaming both ways, and
measure it. Request and response bodies are never logged and never held whole (except an
async request's, which waits in the broker for its turn)."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from modelpilot.meter.admission import Admission, Rejected
from modelpilot.meter.asyncjobs import ASYNC_PATH, AsyncJobs
from modelpilot.meter.asyncoptions import wants_async
from modelpilot.meter.classify import CLIENT_CLOSED, http_class, websocket_class
from modelpilot.meter.concurrency import ConcurrencyTracker
from modelpilot.meter.config import MeterConfig
from modelpilot.meter.metrics import MeterMetrics
from modelpilot.meter.openai import BodyReader, StreamReader, is_openai, reader_for
from modelpilot.meter.upstream import Response, Unreachable, Upstream, UpstreamBroken

log = logging.getLogger("modelpilot.meter")

# Hop-by-hop headers (RFC 9110 7.6.1) and Host belong to one connection, not the message.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
RESERVED_PREFIX = "/_modelpilot/"
# Set by the activator on a request it held while the model scaled from zero: the seconds it
# waited, counted in this request's end-to-end time (and time to first byte or token) as
# the client lived them. Bounded by the longest activation timeout.
HELD_HEADER = "X-ModelPilot-Held-Seconds"
MAX_HELD_SECONDS = 3600.0


def held_seconds(value: str | None) -> float:
    """HELD_HEADER's value; 0 when absent or not a number in [0, MAX_HELD_SECONDS]."""
    if not value:
        return 0.0
    try:
        held = float(value)
    except ValueError:
        return 0.0
    return held if 0 <= held <= MAX_HELD_SECONDS else 0.0


# Also not sent upstream: the meter frames the body itself, and it already answered the
# client's Expect (aiohttp sends 100 Continue before the handler reads the body).
NOT_UPSTREAM = HOP_BY_HOP | {"content-length", "expect"}


def forward_headers(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], peer: str | None = None
) -> CIMultiDict[str]:
    out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)
    if peer:
        prior = headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    return out


def upstream_headers(headers: CIMultiDictProxy[str], peer: str | None) -> list[tuple[str, str]]:
    """The request's headers as the model server gets them (X-Forwarded-For appended).
    forward_headers' filtering again, as a plain list: building a CIMultiDict here cost
    3 us a request (96 -> 99-102 us, interleaved runs)."""
    out = [(k, v) for k, v in headers.items() if k.lower() not in NOT_UPSTREAM]
    if peer:
        prior = headers.get("X-Forwarded-For")
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", f"{prior}, {peer}" if prior else peer))
    return out


@dataclass
class Exchange:
    """What one request measured."""

    start: float
    status: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    ttfb: float | None = None
    inference: float | None = None
    is_async: bool = False
    counted: bool = True
    tokens: StreamReader | BodyReader | None = None  # an OpenAI-compatible response's
    complete: bool = False  # the upstream response ended normally


class Proxy:
    def __init__(
        self, config: MeterConfig, metrics: MeterMetrics, tracker: ConcurrencyTracker
    ) -> None:
        self.config, self.metrics, self.tracker = config, metrics, tracker
        self.upstream_url = config.upstream.rstrip("/")
        self.admission = Admission(
            tracker, config.max_concurrency, config.max_queue, config.queue_timeout
        )
        self.passthrough = frozenset(config.passthrough_paths)
        self.openai = config.openai_metrics
        self.session: aiohttp.ClientSession | None = None  # WebSockets, async jobs, readiness
        self.upstream = Upstream(self.upstream_url, config.connect_timeout, config.upstream_timeout)
        self.jobs = AsyncJobs(config, self.admission, metrics, self.upstream_url)

    async def start(self) -> None:
        # Keep-alive pool to the model server; bytes pass as sent (no decompression).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout,
                sock_read=self.config.upstream_timeout,
            ),
        )
        await self.jobs.start(self.session)

    async def close(self) -> None:
        self.upstream.close()
        await self.jobs.stop()
        if self.session is not None:
            await self.session.close()

    @property
    def in_flight(self) -> int:
        """Requests not finished yet: served (async ones this meter runs included) or
        waiting for a slot."""
        return self.tracker.in_flight

    # -- entry point ----------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(ASYNC_PATH):
            return await self.jobs.handle(request)
        if request.path.startswith(RESERVED_PREFIX):
            raise web.HTTPNotFound(text=f"no meter endpoint at {request.path}\n")
        if request.headers.get("Upgrade", "").lower() == "websocket" and request.method == "GET":
            return await self.websocket(request)
        counted = request.path not in self.passthrough
        if counted and self.jobs.enabled and wants_async(request.headers.get("Prefer", "")):
            return await self.jobs.accept(request, forward_headers(request.headers, request.remote))
        held = held_seconds(request.headers.get(HELD_HEADER))
        exchange = Exchange(start=time.monotonic() - held, counted=counted)
        try:
            return await self._forward(request, exchange)
        finally:
            if counted:
                self._record(exchange)

    def _record(self, ex: Exchange) -> None:
        self.metrics.record(
            status_code=ex.status,
            status_class=http_class(ex.status),
            is_async=ex.is_async,
            end_to_end=time.monotonic() - ex.start,
            ttfb=ex.ttfb,
            inference=ex.inference,
            request_bytes=ex.request_bytes,
            response_bytes=ex.response_bytes,
            tokens=ex.tokens.result(ex.complete) if ex.tokens is not None else None,
        )

    # -- HTTP -----------------------------------------------------------------------------
    async def _forward(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        try:
            if ex.counted:
                await self.admission.acquire()
        except Rejected as exc:
            return await self._error(request, ex, 503, f"model server busy: {exc}")
        try:
            return await self._exchange(request, ex)
        except asyncio.CancelledError:
            ex.status = CLIENT_CLOSED  # the client went away; leaving cancels upstream
            raise
        finally:
            if ex.counted:
                self.admission.release()

    async def _exchange(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        response: web.StreamResponse | None = None

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_any():
                ex.request_bytes += len(chunk)
                yield chunk

        sent = time.monotonic()
        answer: Response | None = None
        try:
            answer = await self.upstream.send(
                request.method,
                request.raw_path,
                upstream_headers(request.headers, request.remote),
                body() if request.body_exists else None,
                request.content_length,
            )
            ex.status = answer.status
            response = web.StreamResponse(
                status=answer.status, reason=answer.reason, headers=forward_headers(answer.headers)
            )
            await response.prepare(request)
            tokens = ex.tokens = self._token_reader(request, answer, ex)
            async for chunk in answer.chunks():
                if ex.ttfb is None:
                    ex.ttfb = time.monotonic() - ex.start
                await response.write(chunk)
                ex.response_bytes += len(chunk)
                if tokens is not None:  # after the write: the client never waits on it
                    tokens.feed(chunk, time.monotonic())
            ex.inference = time.monotonic() - sent
            ex.complete = True
            if ex.ttfb is None:
                ex.ttfb = time.monotonic() - ex.start
            await response.write_eof()
            return response
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            ex.status = CLIENT_CLOSED  # the client went away while we wrote to it
            raise
        except Unreachable as exc:
            return await self._error(request, ex, 502, f"model server unreachable: {exc}")
        except TimeoutError:
            return await self._error(
                request,
                ex,
                504,
                f"model server sent nothing for {self.config.upstream_timeout:g}s",
                response,
            )
        except UpstreamBroken as exc:
            return await self._error(
                request, ex, 502, f"model server connection failed: {exc}", response
            )
        finally:
            if answer is not None:  # back to the pool only after a clean, complete answer
                self.upstream.release(answer)

    def _token_reader(
        self, request: web.Request, upstream: Response, ex: Exchange
    ) -> StreamReader | BodyReader | None:
        if not (self.openai and ex.counted and 200 <= upstream.status < 300):
            return None
        if not is_openai(request.method, request.path):
            return None
        headers = upstream.headers
        return reader_for(
            headers.get("Content-Type", ""), ex.start, headers.get("Content-Encoding", "")
        )

    async def _error(
        self,
        request: web.Request,
        ex: Exchange,
        status: int,
        message: str,
        started: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        ex.status = status
        if started is not None and started.prepared:
            # Headers already went out: all we can do is cut the stream short.
            log.warning(
                "%s %s: %s after the response started", request.method, request.path, message
            )
            if request.transport is not None:
                request.transport.close()
            return started
        log.warning("%s %s -> %d: %s", request.method, request.path, status, message)
        response = web.Response(status=status, text=message + "\n")
        await response.prepare(request)
        ex.ttfb = time.monotonic() - ex.start
        await response.write_eof()
        return response

    # -- WebSocket ------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """Pass a WebSocket session through; it counts once, by its close code."""
        assert self.session is not None
        ex = Exchange(start=time.monotonic())
        url = self.upstream_url.replace("http", "ws", 1) + request.rel_url.raw_path_qs
        headers = {
            k: v
            for k, v in forward_headers(request.headers).items()
            if not k.lower().startswith("sec-websocket")
        }
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        self.tracker.change("active", +1)
        try:
            try:
                upstream = await self.session.ws_connect(url, headers=headers, protocols=protocols)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return await self._error(
                    request, ex, 502, f"model server refused the WebSocket: {exc}"
                )
            async with upstream:
                client = web.WebSocketResponse(protocols=protocols)
                await client.prepare(request)
                ex.ttfb = time.monotonic() - ex.start
                await self._pump(client, upstream, ex)
            return client
        finally:
            self.tracker.change("active", -1)
            ex.status = ex.status or 1006  # cut before either side closed
            self.metrics.record(
                status_code=ex.status,
                status_class=(
                    websocket_class(ex.status) if ex.status >= 1000 else http_class(ex.status)
                ),
                is_async=False,
                end_to_end=time.monotonic() - ex.start,
                ttfb=ex.ttfb,
                inference=None,
                request_bytes=ex.request_bytes,
                response_bytes=ex.response_bytes,
            )

    async def _pump(
        self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, ex: Exchange
    ) -> None:
        """Relay messages both ways. The session's code is the first close seen: recorded
        at once, since the client may drop the connection (cancelling us) right after."""

        async def relay(
            source: "web.WebSocketResponse | aiohttp.ClientWebSocketResponse",
            sink: "web.WebSocketResponse | aiohttp.ClientWebSocketResponse",
            inbound: bool,
        ) -> None:
            async for msg in source:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    size = len(msg.data)
                    if inbound:
                        ex.request_bytes += size
                    else:
                        ex.response_bytes += size
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(msg.data)
                    else:
                        await sink.send_bytes(msg.data)
            # An end without a close frame is 1006 (abnormal closure).
            code = source.close_code or 1006
            ex.status = ex.status or code
            await sink.close(code=code if code != 1006 else 1011)

        tasks = [
            asyncio.create_task(relay(client, upstream, inbound=True)),
            asyncio.create_task(relay(upstream, client, inbound=False)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- readiness ------------------------------------------------------------------------
    async def upstream_ready(self) -> bool:
        assert self.session is not None
        try:
            async with self.session.get(
                self.upstream_url + self.config.upstream_ready_path,
                timeout=aiohttp.ClientTimeout(total=2),
            ) as resp:
                return resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False
