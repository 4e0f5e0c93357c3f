"""The sample model server: `make demo` runs it, and the tests and benchmarks use it.

Like a batching GPU server, its latency grows with the requests it serves at once:
latency = base + per_request x (concurrent - 1), and it takes --load-seconds to "load its
weights" before /health says ready. It needs only aiohttp. Endpoints:

  POST /predict        JSON in ({"input": ...}), JSON out ({"output": ..., "latency_ms": ...});
                       a body that is not a JSON object gets 400
  POST /v1/chat/completions, /v1/completions
                       OpenAI-style, as vLLM answers: `max_tokens` tokens (default 16)
                       after the prefill latency, one per --token-ms + --token-per-request-ms
                       x (concurrent - 1); streamed as server-sent events with {"stream":
                       true}; `usage` in the body, or in a last chunk on
                       {"stream_options": {"include_usage": true}}
  POST /echo           the request body back, streamed
  GET  /status/{code}  that status, with a small body
  GET  /slow?seconds=S answers after S seconds
  GET  /ws             a WebSocket that echoes; send "close:CODE" to be closed with CODE
  GET  /health         200 once loaded (after --load-seconds), 503 before
  POST /health?ok=0|1  makes /health answer 503 (ok=0) or 200 again (a probe made to fail)
  GET  /stats          what it has seen (for tests): requests, cancelled, bytes received
  POST /crash          exits at once with status 1, as a server hitting a fatal error does
  POST /allocate?mb=N  allocates N MiB and keeps it (a batch too big for the memory limit)

Run: python examples/sample-model/server.py --port 8000 (or build its Dockerfile)
"""

import argparse
import asyncio
import json
import os
import time

from aiohttp import WSMsgType, web


class FakeModel:
    def __init__(
        self,
        base_ms: float = 20,
        per_request_ms: float = 5,
        token_ms: float = 20,
        load_seconds: float = 0,
        token_per_request_ms: float = 2,
    ) -> None:
        self.base_ms, self.per_request_ms, self.token_ms = base_ms, per_request_ms, token_ms
        self.token_per_request_ms = token_per_request_ms
        self.ready_at = time.monotonic() + load_seconds
        self.in_flight = 0
        self.stats = {"requests": 0, "cancelled": 0, "bytes_received": 0}
        self.held: list[bytearray] = []
        self.healthy = True

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.add_routes(
            [
                web.post("/predict", self.predict),
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.completions),
                web.post("/echo", self.echo),
                web.get("/status/{code}", self.status),
                web.get("/slow", self.slow),
                web.get("/ws", self.websocket),
                web.get("/health", self.health),
                web.post("/health", self.set_health),
                web.get("/stats", self.get_stats),
                web.post("/crash", self.crash),
                web.post("/allocate", self.allocate),
            ]
        )
        return app

    def _latency(self) -> float:
        return (self.base_ms + self.per_request_ms * max(self.in_flight - 1, 0)) / 1000

    async def predict(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        self.in_flight += 1
        try:
            latency = self._latency()
            await asyncio.sleep(latency)
            return web.json_response(
                {
                    "output": f"echo:{payload.get('input', '')}",
                    "latency_ms": round(latency * 1000, 1),
                }
            )
        except asyncio.CancelledError:
            self.stats["cancelled"] += 1
            raise
        finally:
            self.in_flight -= 1

    def _token_seconds(self) -> float:
        """Decoding slows as the batch grows, as on a GPU."""
        return (self.token_ms + self.token_per_request_ms * max(self.in_flight - 1, 0)) / 1000

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """OpenAI-style /v1/completions and /v1/chat/completions: `max_tokens` tokens after a
        prefill of `_latency()`, streamed as vLLM streams them when `stream` is true, with
        `usage` (always when not streamed, on `stream_options.include_usage` when streamed)."""
        self.stats["requests"] += 1
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.json_response({"error": {"message": "expected a JSON object"}}, status=400)
        chat = request.path.endswith("/chat/completions")
        prompt = payload.get("messages") if chat else payload.get("prompt")
        usage = {"prompt_tokens": len(json.dumps(prompt).split()), "completion_tokens": 0}
        tokens = int(payload.get("max_tokens", 16))
        name = "chat.completion" if chat else "text_completion"
        self.in_flight += 1
        try:
            await asyncio.sleep(self._latency())
            if not payload.get("stream"):
                await asyncio.sleep(tokens * self._token_seconds())
                usage["completion_tokens"] = tokens
                text = "tok " * tokens
                content = {"message": {"role": "assistant", "content": text}} if chat else {}
                body = {
                    "object": name,
                    "choices": [
                        {"index": 0, "finish_reason": "length", **(content or {"text": text})}
                    ],
                    "usage": usage | {"total_tokens": usage["prompt_tokens"] + tokens},
                }
                return web.json_response(body)
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)

            async def send(event: dict[str, object]) -> None:
                event = {"object": f"{name}.chunk" if chat else name, **event}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())

            if chat:
                await send({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            for i in range(tokens):
                if i:
                    await asyncio.sleep(self._token_seconds())
                piece = {"delta": {"content": "tok "}} if chat else {"text": "tok "}
                await send({"choices": [{"index": 0, **piece, "finish_reason": None}]})
            if (payload.get("stream_options") or {}).get("include_usage"):
                usage["completion_tokens"] = tokens
                total = usage["prompt_tokens"] + tokens
                await send({"choices": [], "usage": usage | {"total_tokens": total}})
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        except asyncio.CancelledError:
            self.stats["cancelled"] += 1
            raise
        finally:
            self.in_flight -= 1

    async def echo(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        response = web.StreamResponse()
        response.content_type = request.content_type
        await response.prepare(request)
        async for chunk in request.content.iter_any():
            self.stats["bytes_received"] += len(chunk)
            await response.write(chunk)
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}\n")

    async def slow(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        try:
            await asyncio.sleep(float(request.query.get("seconds", "1")))
        except asyncio.CancelledError:
            self.stats["cancelled"] += 1
            raise
        return web.Response(text="slow\n")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data.startswith("close:"):
                await ws.close(code=int(msg.data.split(":", 1)[1]))
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def health(self, _: web.Request) -> web.Response:
        if time.monotonic() < self.ready_at:
            return web.Response(status=503, text="loading model\n")
        if not self.healthy:
            return web.Response(status=503, text="made unhealthy\n")
        return web.Response(text="ok\n")

    async def set_health(self, request: web.Request) -> web.Response:
        self.healthy = request.query.get("ok", "1") != "0"
        return web.Response(text=f"healthy: {self.healthy}\n")

    async def get_stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def crash(self, _: web.Request) -> web.Response:
        os._exit(1)

    async def allocate(self, request: web.Request) -> web.Response:
        try:
            mib = int(request.query["mb"])
        except (KeyError, ValueError):
            return web.json_response({"error": "give ?mb=N"}, status=400)
        # Written, not just reserved: the pages count against the memory limit.
        self.held.append(bytearray(b"x" * (mib << 20)))
        return web.json_response({"held_mb": sum(len(b) for b in self.held) >> 20})


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--base-ms", type=float, default=20)
    parser.add_argument("--per-request-ms", type=float, default=5)
    parser.add_argument("--token-ms", type=float, default=20)
    parser.add_argument("--token-per-request-ms", type=float, default=2)
    parser.add_argument("--load-seconds", type=float, default=0)
    args = parser.parse_args()
    model = FakeModel(
        args.base_ms,
        args.per_request_ms,
        args.token_ms,
        args.load_seconds,
        args.token_per_request_ms,
    )
    # Like real servers, notice a client (the meter) that hangs up and stop working for it.
    web.run_app(
        model.app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
