"""The meter's Prometheus series (names and labels are a public contract, see design.md)."""

from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelpilot.meter.concurrency import STATES, ConcurrencyTracker
from modelpilot.meter.openai import Tokens

# Model serving spans milliseconds (a cached embedding) to tens of minutes (a long
# generation or a batch job), and bytes to a GiB (images, audio, long contexts).
TIME_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
)
SIZE_BUCKETS = tuple(float(4**i) for i in range(3, 16))  # 64 B ... 1 GiB
# Decoding runs from a few ms per token (small models, big GPUs) to ~half a second.
TOKEN_TIME_BUCKETS = (
    0.002,
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1,
    2.5,
)


class _Concurrency(Collector):
    def __init__(self, model: str, tracker: ConcurrencyTracker, queue_size: "AsyncQueueSize"):
        self.model, self.tracker, self.queue_size = model, tracker, queue_size

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts, seconds = self.tracker.snapshot()
        gauge = GaugeMetricFamily(
            "modelpilot_concurrent_requests",
            "Requests in the meter now: being served (active) or waiting (queued).",
            labels=["model_deployment", "state"],
        )
        total = CounterMetricFamily(
            "modelpilot_concurrency_seconds",
            "Integral of concurrent requests over time; rate() is the average concurrency.",
            labels=["model_deployment", "state"],
        )
        for state in STATES:
            gauge.add_metric([self.model, state], counts[state])
            total.add_metric([self.model, state], seconds[state])
        yield from (gauge, total)
        size = self.queue_size.size
        if size is not None:  # no broker, or it did not answer: unknown, not 0
            queue = GaugeMetricFamily(
                "modelpilot_async_queue_size",
                "Async requests waiting to run in the model's shared queue (the same value "
                "from each of its meters: aggregate with max, not sum).",
                labels=["model_deployment"],
            )
            queue.add_metric([self.model], size)
            yield queue


class _Outcome(NamedTuple):
    requests: Counter
    end_to_end: Histogram
    ttfb: Histogram
    inference: Histogram
    request_size: Histogram
    response_size: Histogram


class AsyncQueueSize:
    """The model's async queue length, read from the broker before each scrape."""

    def __init__(self) -> None:
        self.size: int | None = None


class MeterMetrics:
    def __init__(self, model: str, tracker: ConcurrencyTracker) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        self.async_queue = AsyncQueueSize()
        r = self.registry
        by_class = ["model_deployment", "status_class"]
        self.requests = Counter(
            "modelpilot_requests",
            "Inference requests by status.",
            ["model_deployment", "status_code", "status_class", "is_async"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "modelpilot_end_to_end_response_time_seconds",
            "Request received to last response byte sent: queueing plus inference.",
            by_class,
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "modelpilot_inference_time_seconds",
            "Time in the model server only: request sent upstream to its last byte.",
            by_class,
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "modelpilot_time_to_first_byte_seconds",
            "Request received to first response byte sent (includes queueing).",
            by_class,
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.request_size = Histogram(
            "modelpilot_request_size_bytes",
            "Request body size.",
            by_class,
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.response_size = Histogram(
            "modelpilot_response_size_bytes",
            "Response body size.",
            by_class,
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.time_in_async_queue = Histogram(
            "modelpilot_time_in_async_queue_seconds",
            "Time an async request waited in the shared queue before a meter started it.",
            ["model_deployment"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "modelpilot_async_webhook_deliveries",
            "Webhook delivery attempts of async results: delivered (2xx), retried (failed, "
            "another attempt follows), gave_up (failed, the last attempt).",
            ["model_deployment", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "modelpilot_tokens",
            "Tokens of OpenAI-compatible requests: input (prompt) and output (generated). "
            'source="usage": the response\'s usage object; "deltas": streamed content '
            "chunks counted (the client asked for no usage).",
            ["model_deployment", "direction", "source"],
            registry=r,
        )
        self.ttft = Histogram(
            "modelpilot_time_to_first_token_seconds",
            "Request received to the first streamed chunk carrying content (includes queueing).",
            by_class,
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "modelpilot_time_per_output_token_seconds",
            "Per streamed request: (last content chunk - first) / (output tokens - 1).",
            by_class,
            buckets=TOKEN_TIME_BUCKETS,
            registry=r,
        )
        r.register(_Concurrency(model, tracker, self.async_queue))
        # An outcome's labelled series, looked up once: labels() takes a lock and builds a
        # key on every call, and the request path would make six of them.
        self._by_outcome: dict[tuple[int, str, bool], _Outcome] = {}

    def _outcome(self, status_code: int, status_class: str, is_async: bool) -> "_Outcome":
        key = (status_code, status_class, is_async)
        if (found := self._by_outcome.get(key)) is None:
            labels = (self.model, status_class)
            found = self._by_outcome[key] = _Outcome(
                self.requests.labels(
                    self.model, str(status_code), status_class, "true" if is_async else "false"
                ),
                self.end_to_end.labels(*labels),
                self.ttfb.labels(*labels),
                self.inference.labels(*labels),
                self.request_size.labels(*labels),
                self.response_size.labels(*labels),
            )
        return found

    def record(
        self,
        *,
        status_code: int,
        status_class: str,
        is_async: bool,
        end_to_end: float,
        ttfb: float | None,
        inference: float | None,
        request_bytes: int,
        response_bytes: int,
        tokens: Tokens | None = None,
    ) -> None:
        series = self._outcome(status_code, status_class, is_async)
        series.requests.inc()
        series.end_to_end.observe(end_to_end)
        if ttfb is not None:
            series.ttfb.observe(ttfb)
        if inference is not None:
            series.inference.observe(inference)
        series.request_size.observe(request_bytes)
        series.response_size.observe(response_bytes)
        if tokens is not None:
            self._tokens((self.model, status_class), tokens)

    def _tokens(self, labels: tuple[str, str], tokens: Tokens) -> None:
        for direction, count in (("input", tokens.input), ("output", tokens.output)):
            if count is not None:
                self.tokens.labels(self.model, direction, tokens.source).inc(count)
        if tokens.ttft is not None:
            self.ttft.labels(*labels).observe(tokens.ttft)
        if tokens.tpot is not None:
            self.tpot.labels(*labels).observe(tokens.tpot)
