"""Keep-alive HTTP/1.1 connections to the one model server a meter fronts, for the request
path. A general client (aiohttp's) spent more than half of the meter's time per request on
what a proxy to one fixed host never needs (URL parsing, cookies, redirects, tracing,
per-request timeout tasks); this one writes the request head as bytes and parses the answer
with llhttp (httptools), streaming both bodies. WebSockets, async jobs and readiness keep
aiohttp's client.

Errors: `Unreachable` (no connection), `TimeoutError` (nothing for `read_timeout` seconds),
`UpstreamBroken` (the connection broke or the answer was not HTTP)."""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

IDLE_SECONDS = 60.0  # an idle connection older than this is closed, not reused
HIGH_WATER = 256 * 1024  # response bytes buffered before reading from the model pauses


class Unreachable(Exception):
    """No connection to the model server (refused, no route, connect timeout)."""


class UpstreamBroken(Exception):
    """The connection broke, or what came back was not an HTTP answer."""


class _Connection(asyncio.Protocol):
    """One connection; it carries one exchange at a time."""

    def __init__(self, read_timeout: float) -> None:
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._writable: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.response: Response | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: the server is not speaking HTTP to us
            self.close()
            return
        try:
            response.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.fail(UpstreamBroken(f"not an HTTP answer: {exc}"))
            self.close()
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.eof(exc)
        self.wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(UpstreamBroken("connection closed"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- used by Response and the pool -----------------------------------------------------
    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable

    async def wait(self) -> None:
        """Until more of the answer arrives, the connection ends, or `read_timeout` passes
        with nothing."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._timer = loop.call_later(self.read_timeout, self._expire, waiter)
        try:
            await waiter
        finally:
            self._timer.cancel()
            self._waiter = None

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """The model server's answer: status, reason and headers once the head has arrived,
    then its body in chunks as they arrive."""

    def __init__(self, connection: _Connection, head_only: bool) -> None:
        self.connection, self.head_only = connection, head_only
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.head = False  # the head has arrived
        self.complete = False  # ... and the whole body
        self.keep_alive = False
        self.error: Exception | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self.writer: asyncio.Task[None] | None = None  # sending the request body

    def body_sent(self, writer: "asyncio.Task[None]") -> None:
        """The request body's sending ended: a failure (the client's upload broke off)
        fails the exchange, since the server would wait for the rest."""
        if not writer.cancelled() and (exc := writer.exception()) is not None:
            self.fail(exc if isinstance(exc, UpstreamBroken) else UpstreamBroken(str(exc)))
            self.connection.close()
            self.connection.wake()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim (100 Continue): the answer follows, same parser
            self.reason, self.headers = "", CIMultiDict()
            return
        self.status, self.head = status, True
        if self.head_only:  # an answer to HEAD has no body, whatever its Content-Length says
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            assert self.connection.transport is not None
            self.connection.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.head and not self.complete:
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- the connection's end --------------------------------------------------------------
    def fail(self, error: Exception) -> None:
        if not self.complete and self.error is None:
            self.error = error

    def eof(self, exc: Exception | None) -> None:
        if self.complete:
            return
        framed = "Content-Length" in self.headers or "chunked" in self.headers.get(
            "Transfer-Encoding", ""
        )
        if self.head and not framed and exc is None:
            self.complete = True  # a body delimited by the connection's close
        else:
            self.fail(UpstreamBroken("connection closed mid-answer" if self.head else "closed"))

    # -- reading ---------------------------------------------------------------------------
    async def read_head(self) -> None:
        while not self.head:
            if self.error is not None:
                raise self.error
            await self.connection.wait()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= HIGH_WATER // 4:
                    self._paused = False
                    assert self.connection.transport is not None
                    self.connection.transport.resume_reading()
                yield chunk
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            await self.connection.wait()


class Upstream:
    """A pool of keep-alive connections to `url`'s host (its path, if any, prefixes every
    request's)."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.encode()
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.read_timeout), self.host, self.port
                )
        except (OSError, TimeoutError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from None
        return connection

    def _reused(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def send(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
        length: int | None,
    ) -> Response:
        """Send a request (`body` streamed: `length` bytes, or chunked when None) and
        return once the answer's head has arrived."""
        # Bytes as they came: aiohttp decodes heads as UTF-8 with surrogateescape.
        lines = [f"{method} {self.prefix}{target} HTTP/1.1".encode(errors="surrogateescape")]
        lines.append(b"Host: " + self.host_header)
        lines.extend(f"{k}: {v}".encode(errors="surrogateescape") for k, v in headers)
        if length is not None:  # an empty body too: some servers want the 0
            lines.append(b"Content-Length: %d" % length)
        elif body is not None:
            lines.append(b"Transfer-Encoding: chunked")
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        head_only = method == "HEAD"
        connection = self._reused()
        if connection is not None and body is None:
            try:
                return await self._exchange(connection, head, None, None, head_only)
            except UpstreamBroken as exc:
                # The server closed an idle connection as we reused it: nothing of this
                # request reached it (no answer, no body), so a new connection may retry.
                if connection.response is None or connection.response.head:
                    raise exc
            connection = None
        if connection is None:
            connection = await self._connect()
        return await self._exchange(connection, head, body, length, head_only)

    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        length: int | None,
        head_only: bool,
    ) -> Response:
        response = connection.response = Response(connection, head_only)
        assert connection.transport is not None
        if connection.closed:  # closed between its pick and now: nothing was sent
            raise UpstreamBroken("connection closed")
        try:
            connection.transport.write(head)
            if body is not None:
                # Sent alongside reading the answer: a server may answer (and stream back,
                # like an echo) while the body is still coming, and waiting for the whole
                # body first would deadlock both ends once their buffers fill.
                response.writer = asyncio.create_task(
                    self._write_body(connection, body, chunked=length is None)
                )
                response.writer.add_done_callback(response.body_sent)
            await response.read_head()
        except BaseException:
            if response.writer is not None:
                response.writer.cancel()
            connection.close()
            raise
        return response

    async def _write_body(
        self, connection: _Connection, body: AsyncIterator[bytes], chunked: bool
    ) -> None:
        transport = connection.transport
        assert transport is not None
        async for chunk in body:
            if connection.closed:
                raise UpstreamBroken("connection closed while sending the body")
            if chunked:
                transport.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                transport.write(chunk)
            await connection.drain()
        if chunked:
            transport.write(b"0\r\n\r\n")

    def release(self, response: Response) -> None:
        """Done with `response`: its connection goes back to the pool if the exchange
        ended cleanly, else it is closed."""
        connection = response.connection
        connection.response = None
        sent = response.writer is None or (
            response.writer.done()
            and not response.writer.cancelled()
            and response.writer.exception() is None
        )
        if response.writer is not None and not response.writer.done():
            response.writer.cancel()
        if sent and response.complete and response.keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
