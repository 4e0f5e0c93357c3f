"""The meter between a real client and a real (fake) model server, all on loopback."""

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_api_client import PrometheusConnect

from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.prometheus import PrometheusServer
from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess
from modelpilot.meter.proxy import HELD_HEADER
from tests.integration.conftest import until


@pytest.fixture
def model(tmp_path: Path) -> Iterator[FakeModelProcess]:
    server = FakeModelProcess(tmp_path, base_ms=5, per_request_ms=0, token_ms=300)
    yield server
    server.stop()


@pytest.fixture
def meter(model: FakeModelProcess, start_meter: Callable[..., MeterProcess]) -> MeterProcess:
    return start_meter(model.url)


def assert_idle(meter: MeterProcess) -> None:
    assert meter.value("modelpilot_concurrent_requests") == 0


async def test_counts_sizes_and_latency_by_status(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    sent = received = 0
    for i in range(3):
        body = b'{"input": "' + b"x" * (100 * i) + b'"}'
        async with http.post(f"{meter.url}/predict", data=body) as resp:
            assert resp.status == 200
            received += len(await resp.read())
            sent += len(body)
    for code in (404, 404, 500):
        async with http.get(f"{meter.url}/status/{code}") as resp:
            assert resp.status == code
            await resp.read()

    requests = "modelpilot_requests_total"
    assert meter.value(requests, status_code="200", status_class="2xx", is_async="false") == 3
    assert meter.value(requests, status_code="404", status_class="4xx") == 2
    assert meter.value(requests, status_code="500", status_class="5xx") == 1
    e2e = "modelpilot_end_to_end_response_time_seconds"
    assert meter.value(f"{e2e}_count", status_class="2xx") == 3
    # Each /predict takes >= 5 ms in the model; the meter adds, never hides.
    assert meter.value(f"{e2e}_sum", status_class="2xx") >= 0.015
    assert meter.value("modelpilot_inference_time_seconds_sum", status_class="2xx") >= 0.015
    assert meter.value("modelpilot_request_size_bytes_sum", status_class="2xx") == sent
    assert meter.value("modelpilot_response_size_bytes_sum", status_class="2xx") == received
    assert meter.value("modelpilot_time_to_first_byte_seconds_count") == 6
    assert_idle(meter)


async def test_time_held_by_the_activator_counts_in_end_to_end_time(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    # Scale from zero: the activator held this request 12.5 s while a replica started.
    body = b'{"input": "hi"}'
    async with http.post(f"{meter.url}/predict", data=body, headers={HELD_HEADER: "12.5"}) as resp:
        assert resp.status == 200
    async with http.post(f"{meter.url}/predict", data=body, headers={HELD_HEADER: "?"}) as resp:
        assert resp.status == 200
    e2e = "modelpilot_end_to_end_response_time_seconds"
    assert meter.value(f"{e2e}_count", status_class="2xx") == 2
    assert 12.5 < meter.value(f"{e2e}_sum", status_class="2xx") < 13.5
    assert meter.value(f"{e2e}_bucket", status_class="2xx", le="10.0") == 1


async def test_health_paths_pass_through_uncounted(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{meter.url}/health") as resp:
        assert resp.status == 200
    assert meter.value("modelpilot_requests_total") == 0
    assert meter.readyz() == 200


async def test_sse_first_event_arrives_before_the_stream_ends(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    start = time.monotonic()
    arrivals = []
    async with http.post(
        f"{meter.url}/v1/completions", json={"stream": True, "max_tokens": 3}
    ) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        async for line in resp.content:
            if line.startswith(b"data:"):
                arrivals.append(time.monotonic() - start)
    # 3 tokens, 300 ms apart, then [DONE]: the first must not wait for the last.
    assert len(arrivals) == 4
    assert arrivals[0] < 0.25
    assert arrivals[-1] >= 0.55
    ttfb = meter.value("modelpilot_time_to_first_byte_seconds_sum")
    e2e = meter.value("modelpilot_end_to_end_response_time_seconds_sum")
    assert ttfb < 0.25
    assert e2e >= 0.55
    assert_idle(meter)


async def test_websocket_session_counted_by_close_code(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{meter.url}/ws") as ws:
        await ws.send_str("hello")
        assert (await ws.receive()).data == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive()).data == b"\x00\x01"
    async with http.ws_connect(f"{meter.url}/ws") as ws:
        await ws.send_str("close:1011")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE
    assert await until(lambda: meter.value("modelpilot_requests_total") == 2)
    assert meter.value("modelpilot_requests_total", status_code="1000", status_class="2xx") == 1
    assert meter.value("modelpilot_requests_total", status_code="1011", status_class="5xx") == 1
    assert_idle(meter)


async def test_upstream_refused_is_502(
    start_meter: Callable[..., MeterProcess], http: aiohttp.ClientSession
) -> None:
    meter = start_meter(f"http://127.0.0.1:{pick_port()}")  # nothing listens there
    async with http.post(f"{meter.url}/predict", json={}) as resp:
        assert resp.status == 502
        assert "model server unreachable" in await resp.text()
    assert meter.value("modelpilot_requests_total", status_code="502", status_class="5xx") == 1
    assert meter.readyz() == 503  # its readiness follows the model server's
    assert_idle(meter)


async def test_upstream_silent_is_504(
    model: FakeModelProcess,
    start_meter: Callable[..., MeterProcess],
    http: aiohttp.ClientSession,
) -> None:
    meter = start_meter(model.url, upstream_timeout=0.3)
    async with http.get(f"{meter.url}/slow?seconds=2") as resp:
        assert resp.status == 504
        assert "sent nothing for 0.3s" in await resp.text()
    assert meter.value("modelpilot_requests_total", status_code="504", status_class="5xx") == 1
    assert_idle(meter)


@pytest.mark.parametrize("where", ["mid-stream", "mid-request"])
async def test_client_disconnect_is_499_and_cancels_upstream(
    model: FakeModelProcess, meter: MeterProcess, http: aiohttp.ClientSession, where: str
) -> None:
    if where == "mid-stream":
        async with http.post(
            f"{meter.url}/v1/completions", json={"stream": True, "max_tokens": 20}
        ) as resp:
            await resp.content.readline()  # the first token arrived; now hang up
    else:
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(
                f"{meter.url}/slow?seconds=5", timeout=aiohttp.ClientTimeout(total=0.3)
            ):
                pass
    assert await until(lambda: meter.value("modelpilot_requests_total", status_code="499") == 1)
    assert meter.value("modelpilot_requests_total", status_class="4xx") == 1
    assert await until(lambda: model.stats()["cancelled"] == 1), model.stats()
    assert_idle(meter)
    if where == "mid-stream":  # the token it got counts; a cut stream has no TPOT
        assert meter.value("modelpilot_tokens_total", direction="output", source="deltas") == 1
        assert meter.value("modelpilot_time_to_first_token_seconds_count") == 1
        assert meter.value("modelpilot_time_per_output_token_seconds_count") == 0


CHAT = {"messages": [{"role": "user", "content": "Say hello in three words"}], "max_tokens": 3}
PROMPT_TOKENS = 8  # the sample model counts the words of the JSON-encoded messages


async def test_openai_stream_tokens_ttft_and_tpot(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    async with http.post(f"{meter.url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        events = [line async for line in resp.content if line.startswith(b"data:")]
    assert len(events) == 6  # role, 3 tokens, usage, [DONE]: passed through untouched
    tokens = "modelpilot_tokens_total"
    assert meter.value(tokens, direction="input", source="usage") == PROMPT_TOKENS
    assert meter.value(tokens, direction="output", source="usage") == 3
    assert meter.value("modelpilot_time_to_first_token_seconds_count", status_class="2xx") == 1
    assert meter.value("modelpilot_time_to_first_token_seconds_sum") < 0.25  # 5 ms prefill
    # Tokens 300 ms apart: (last - first) / (3 - 1).
    assert meter.value("modelpilot_time_per_output_token_seconds_count") == 1
    assert 0.28 <= meter.value("modelpilot_time_per_output_token_seconds_sum") <= 0.4


async def test_openai_stream_without_usage_counts_deltas(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{meter.url}/v1/chat/completions", json=CHAT | {"stream": True}) as r:
        await r.read()
    assert meter.value("modelpilot_tokens_total", direction="output", source="deltas") == 3
    assert meter.value("modelpilot_tokens_total", direction="input") == 0  # unknown: not counted
    assert meter.value("modelpilot_time_per_output_token_seconds_count") == 1


async def test_openai_json_response_counts_usage_only(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{meter.url}/v1/chat/completions", json=CHAT) as resp:
        assert (await resp.json())["usage"]["completion_tokens"] == 3
    assert (
        meter.value("modelpilot_tokens_total", direction="input", source="usage") == PROMPT_TOKENS
    )
    assert meter.value("modelpilot_tokens_total", direction="output", source="usage") == 3
    assert meter.value("modelpilot_time_to_first_token_seconds_count") == 0
    # A 400 from the model is an error, not tokens; other paths are never read.
    async with http.post(f"{meter.url}/v1/chat/completions", data=b"[") as resp:
        assert resp.status == 400
    async with http.post(f"{meter.url}/predict", json={"input": "usage"}) as resp:
        assert resp.status == 200
    assert meter.value("modelpilot_tokens_total") == PROMPT_TOKENS + 3


async def test_token_reading_can_be_switched_off(
    model: FakeModelProcess, start_meter: Callable[..., MeterProcess], http: aiohttp.ClientSession
) -> None:
    meter = start_meter(model.url, openai_metrics=False)
    async with http.post(f"{meter.url}/v1/chat/completions", json=CHAT | {"stream": True}) as r:
        assert len(await r.read()) > 0
    assert meter.value("modelpilot_requests_total", status_class="2xx") == 1
    assert meter.value("modelpilot_tokens_total") == 0


async def test_queue_full_or_timed_out_is_503(
    model: FakeModelProcess,
    start_meter: Callable[..., MeterProcess],
    http: aiohttp.ClientSession,
) -> None:
    meter = start_meter(model.url, max_concurrency=1, queue_timeout=0.5)
    slow = asyncio.create_task(http.get(f"{meter.url}/slow?seconds=1.5"))
    await asyncio.sleep(0.2)
    waiting = asyncio.create_task(http.post(f"{meter.url}/predict", json={}))
    await asyncio.sleep(0.2)
    assert meter.value("modelpilot_concurrent_requests", state="queued") == 1
    assert meter.value("modelpilot_concurrent_requests", state="active") == 1
    resp = await waiting
    assert resp.status == 503
    assert "no slot free after 0.5s in the queue (1 requests in flight)" in await resp.text()
    assert (await slow).status == 200
    assert meter.value("modelpilot_requests_total", status_code="503") == 1
    assert meter.value("modelpilot_concurrency_seconds_total", state="queued") >= 0.45
    assert_idle(meter)


async def test_concurrency_integral_is_exact(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    # Four requests of 0.5 s at once: 2.0 request-seconds of concurrency.
    responses = await asyncio.gather(*(http.get(f"{meter.url}/slow?seconds=0.5") for _ in range(4)))
    assert [r.status for r in responses] == [200] * 4
    seconds = meter.value("modelpilot_concurrency_seconds_total", state="active")
    assert 2.0 <= seconds < 2.2
    assert_idle(meter)


async def test_without_a_broker_respond_async_is_served_at_once(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    # RFC 7240: a preference the server may not apply; with no queue to put it on, the
    # request is answered now rather than lost with the pod.
    async with http.post(
        f"{meter.url}/predict", json={"input": "now"}, headers={"Prefer": "respond-async"}
    ) as resp:
        assert resp.status == 200
        assert "Preference-Applied" not in resp.headers
        assert b"echo:now" in await resp.read()
    assert meter.value("modelpilot_requests_total", is_async="false", status_code="200") == 1
    assert not [n for n, _ in meter.scrape() if n == "modelpilot_async_queue_size"]  # unknown
    async with http.get(f"{meter.url}/_modelpilot/async/some-id") as resp:
        assert resp.status == 404
        assert "no broker" in await resp.text()


async def test_large_upload_streams_without_buffering(
    meter: MeterProcess, model: FakeModelProcess, http: aiohttp.ClientSession
) -> None:
    size, chunk = 256 * 1024 * 1024, b"x" * (1024 * 1024)
    before = meter.rss_peak_kib()

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    async with http.post(f"{meter.url}/echo", data=upload()) as resp:
        echoed = 0
        async for part in resp.content.iter_any():
            echoed += len(part)
    assert echoed == size
    assert model.stats()["bytes_received"] == size
    assert meter.value("modelpilot_request_size_bytes_sum") == size
    growth_mib = (meter.rss_peak_kib() - before) / 1024
    assert growth_mib < 32, f"the meter grew {growth_mib:.0f} MiB for a 256 MiB upload"


def test_malformed_request_gets_400(meter: MeterProcess) -> None:
    with socket.create_connection(("127.0.0.1", meter.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status_line = sock.recv(1024).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.") and status_line.endswith(b" 400 Bad Request")


async def test_sigterm_drains_in_flight_requests(
    meter: MeterProcess, http: aiohttp.ClientSession
) -> None:
    slow = [asyncio.create_task(http.get(f"{meter.url}/slow?seconds=1")) for _ in range(3)]
    await asyncio.sleep(0.3)
    meter.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    assert meter.readyz() == 503  # readiness is off before the in-flight work is done
    assert [(await r).status for r in slow] == [200, 200, 200]
    assert await asyncio.to_thread(meter.proc.wait, 10) == 0
    assert "drained" in meter.log.read_text()


async def test_prometheus_scrapes_the_meter_for_the_advisor_queries(
    meter: MeterProcess,
    http: aiohttp.ClientSession,
    prometheus_scraping: Callable[..., PrometheusServer],
) -> None:
    server = prometheus_scraping({"meter": [meter.admin.removeprefix("http://")]})
    prom = PrometheusConnect(url=server.url, disable_ssl=True)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # steady load: 2 at a time, ~0.2 s each
        await asyncio.gather(*(http.get(f"{meter.url}/slow?seconds=0.2") for _ in range(2)))

    end = time.time()
    await asyncio.sleep(2.5)  # let Prometheus scrape past the end of the load
    at = {"time": str(end - 0.5)}
    rate = prom.custom_query(
        "sum by (model_deployment) "
        '(rate(modelpilot_concurrency_seconds_total{state="active"}[4s]))',
        params=at,
    )
    p95 = prom.custom_query(
        "histogram_quantile(0.95, sum by (le) "
        "(rate(modelpilot_end_to_end_response_time_seconds_bucket[4s])))",
        params=at,
    )
    assert rate and rate[0]["metric"] == {"model_deployment": "chat"}
    assert 1.5 < float(rate[0]["value"][1]) < 2.1  # two requests in flight nearly always
    # Every request takes 0.2-0.25 s: p95 interpolates inside the (0.1, 0.25] bucket.
    assert 0.2 <= float(p95[0]["value"][1]) <= 0.25
