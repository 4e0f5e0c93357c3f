"""Synthetic model-serving histories: a traffic pattern, a model, and ModelPilot's own
scaling rule, simulated step by step. They give the advisor's tests, benchmark and demo
the contract series of a situation (thrash, cold starts, ...) without waiting hours.

The model and the step-by-step run are the advisor's replay (`modelpilot.advisor.replay`);
here are the traffic patterns and the series Prometheus would hold.
"""

import math
import random
from dataclasses import dataclass, field

from modelpilot.advisor.replay import Load, ModelBehaviour, Step, history, run
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.devcluster.prometheus import Series
from modelpilot.meter.metrics import TIME_BUCKETS

__all__ = ["ModelBehaviour", "Scenario", "Step", "catalogue", "history", "series", "simulate"]


@dataclass
class Scenario:
    name: str
    settings: AutoscalingSpec
    load: Load
    behaviour: ModelBehaviour = field(default_factory=ModelBehaviour)
    async_load: Load | None = None
    objective_ms: int | None = None


def simulate(s: Scenario, seconds: float, step: float = 15.0, seed: int = 1) -> list[Step]:
    return run(s.settings, s.load, s.behaviour, seconds, step, seed, s.async_load)


@dataclass(frozen=True)
class Streaming:
    """An LLM behind an OpenAI-compatible API, streamed: a step's latency is its time to
    first token, and generation adds `generation_seconds` to the end-to-end time. Its
    engine (vLLM) reports a KV cache that each request in flight on a replica fills by
    `kv_per_request`, and requests that do not fit wait inside it."""

    generation_seconds: float = 8.0
    kv_per_request: float = 0.25


class _Histogram:
    """A histogram's cumulative buckets, count and sum, fed a step's requests at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buckets = dict.fromkeys((*TIME_BUCKETS, math.inf), 0.0)
        self.count = self.total = 0.0

    def observe(self, served: float, latency: float) -> None:
        self.count += served
        self.total += served * latency
        # Spread each step's requests around its latency so quantiles interpolate sensibly.
        for share, factor in ((0.2, 0.8), (0.3, 0.95), (0.3, 1.05), (0.15, 1.2), (0.05, 1.6)):
            for le in self.buckets:
                if latency * factor <= le:
                    self.buckets[le] += served * share

    def samples(self, labels: dict[str, str]) -> list[tuple[str, dict[str, str], float]]:
        out = [
            (
                f"{self.name}_bucket",
                {**labels, "le": "+Inf" if math.isinf(le) else f"{le:g}"},
                count,
            )
            for le, count in self.buckets.items()
        ]
        return [
            *out,
            (f"{self.name}_count", labels, self.count),
            (f"{self.name}_sum", labels, self.total),
        ]


def series(
    steps: list[Step],
    start: float,
    namespace: str,
    model: str,
    with_queue: bool = False,
    streaming: Streaming | None = None,
) -> list[Series]:
    """The contract series for these steps (meter and operator metrics), and the engine's
    when the model is `streaming`."""
    meter = {"namespace": namespace, "model_deployment": model, "pod": f"{model}-0"}
    operator = {"namespace": namespace, "model_deployment": model}
    integral = requests = 0.0
    end_to_end = _Histogram("modelpilot_end_to_end_response_time_seconds")
    ttft = _Histogram("modelpilot_time_to_first_token_seconds")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}

    def add(name: str, labels: dict[str, str], t: float, value: float) -> None:
        out.setdefault((name, tuple(sorted(labels.items()))), []).append((t, value))

    previous_t = None
    for s in steps:
        t = start + s.t
        dt = s.t - previous_t if previous_t is not None else 0.0
        previous_t = s.t
        integral += s.concurrency * dt
        served = s.served * dt
        requests += served
        generation = streaming.generation_seconds if streaming else 0.0
        end_to_end.observe(served, s.latency + generation)
        ok = {**meter, "status_class": "2xx"}
        histograms = [end_to_end]
        if streaming:
            ttft.observe(served, s.latency)
            histograms.append(ttft)
            per_replica = s.concurrency / s.active if s.active else 0.0
            kv = per_replica * streaming.kv_per_request
            fit = 1 / streaming.kv_per_request
            add("vllm:kv_cache_usage_perc", meter, t, min(1.0, kv))
            add("vllm:num_requests_waiting", meter, t, max(0.0, per_replica - fit) * s.active)
        for histogram in histograms:
            for name, labels, value in histogram.samples(ok):
                add(name, labels, t, value)
        add("modelpilot_concurrency_seconds_total", {**meter, "state": "active"}, t, integral)
        add(
            "modelpilot_requests_total",
            {**meter, "status_code": "200", "status_class": "2xx", "is_async": "false"},
            t,
            requests,
        )
        for state, value in (("active", s.active), ("starting", s.starting), ("terminating", 0)):
            add("modelpilot_replicas", {**operator, "state": state}, t, value)
        add("modelpilot_desired_replicas", operator, t, s.desired)
        if with_queue:
            add("modelpilot_async_queue_size", meter, t, s.queue)
    return [
        Series(name=name, labels=dict(labels), samples=samples)
        for (name, labels), samples in out.items()
    ]


def _square(high: float, low: float, busy: float, period: float) -> Load:
    return lambda t: high if t % period < busy else low


def catalogue() -> list[Scenario]:
    """One scenario per diagnosis, plus healthy ones that must stay quiet."""
    noise = random.Random(3)
    jitter = [noise.uniform(0.75, 1.25) for _ in range(10_000)]
    return [
        Scenario(
            "healthy",
            AutoscalingSpec(min_replicas=2, max_replicas=6, concurrency_target=4),
            load=lambda t: 8.0,
        ),
        Scenario(
            "noisy-healthy",
            AutoscalingSpec(min_replicas=2, max_replicas=8, concurrency_target=4),
            load=lambda t: 8.0 * jitter[int(t // 60) % len(jitter)],
        ),
        # Bursts every 21 minutes; the 5-minute delay drops replicas in each 16-minute lull,
        # and each burst then waits for new replicas to start.
        Scenario(
            "thrash",
            AutoscalingSpec(
                min_replicas=1, max_replicas=8, concurrency_target=2, scale_down_delay_seconds=300
            ),
            load=_square(30.0, 2.0, 300, 1260),
            behaviour=ModelBehaviour(startup_seconds=120),
        ),
        # Lulls a little longer than the delay; replicas start at once (no latency hit).
        Scenario(
            "premature",
            AutoscalingSpec(
                min_replicas=1, max_replicas=8, concurrency_target=2, scale_down_delay_seconds=300
            ),
            load=_square(20.0, 2.0, 900, 1320),
            behaviour=ModelBehaviour(startup_seconds=0),
        ),
        Scenario(
            "capacity",
            AutoscalingSpec(min_replicas=1, max_replicas=2, concurrency_target=4),
            load=lambda t: 12.0 + 20.0 * min(t / 7200, 1.0),
        ),
        # Bursts every 40 min need 4+ replicas; each takes 8 minutes to load the model.
        Scenario(
            "cold-starts",
            AutoscalingSpec(
                min_replicas=1, max_replicas=8, concurrency_target=4, scale_down_delay_seconds=900
            ),
            load=_square(24.0, 0.5, 900, 2400),
            behaviour=ModelBehaviour(startup_seconds=480),
        ),
        # One replica per 10 in flight is far more than this model can serve in time.
        Scenario(
            "target-too-high",
            AutoscalingSpec(
                min_replicas=1,
                max_replicas=20,
                concurrency_target=10,
                target_utilization_percentage=100,
            ),
            load=lambda t: 4.0 + 2.5 * math.sin(t / 900),
            behaviour=ModelBehaviour(base_seconds=0.6, per_request_seconds=0.1),
            objective_ms=1000,
        ),
        Scenario(
            "async-backlog",
            AutoscalingSpec(min_replicas=2, max_replicas=2, concurrency_target=4),
            load=lambda t: 4.0,
            async_load=lambda t: 1.0,
            behaviour=ModelBehaviour(async_per_replica_rps=0.3),
        ),
        Scenario(
            "over-provisioned",
            AutoscalingSpec(min_replicas=6, max_replicas=8, concurrency_target=4),
            load=lambda t: 2.0 + 0.5 * math.sin(t / 600),
        ),
    ]
