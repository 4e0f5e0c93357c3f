"""Read advisor inputs from Prometheus: one range query per signal for all models.

Only the contract series are read (meter and operator metrics), so anyone can replay a
history into Prometheus and get the same answer. Where Prometheus has ModelPilot's recording
rules (group `modelpilot.advisor` of manifests/monitoring/prometheusrule.yaml), the
per-model series they record are read instead of every histogram bucket of every pod.
"""

import asyncio
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypedDict

import msgspec
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from modelpilot.advisor.model import SIGNALS, History, Objective
from modelpilot.api import Key
from modelpilot.api.spec import LatencyMetric
from modelpilot.gc_pause import gc_paused

BY = "namespace, model_deployment"
LATENCY_SHARDS = 2


# The histogram behind each kind of latency objective.
LATENCY_SERIES: dict[LatencyMetric, str] = {
    "EndToEnd": "modelpilot_end_to_end_response_time_seconds",
    "TimeToFirstToken": "modelpilot_time_to_first_token_seconds",
    "TimePerOutputToken": "modelpilot_time_per_output_token_seconds",
}
# The serving engine's own signals, where Prometheus scrapes them with the model's labels:
# requests waiting in the engine, and the share of its KV cache in use (0..1). Names as vLLM
# (current, then pre-0.7), SGLang and TGI document them; the first that exists wins.
ENGINE_QUEUE = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size")
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")

# Prometheus gzips its answers when asked to, and clients ask by default: over loopback or a
# cluster network, compressing megabytes of range results costs more CPU on both ends (about
# 0.15 s per query of 500 models x 6 h) than sending them as they are.
UNCOMPRESSED = {"Accept-Encoding": "identity"}

LatencyKind = tuple[LatencyMetric, int]
DEFAULT_KIND: LatencyKind = ("EndToEnd", 95)

# The recording rules are evaluated over the advisor's window at its default step (2 x 60 s):
# read at another window they would answer a different question, so they are not.
RULES_WINDOW = 120
RECORDED_PERCENTILES = (50, 90, 95, 99)
RULES_PROBE = "modelpilot:concurrency:rate2m"
FROM_RULES = "from ModelPilot's recording rules"
FROM_RAW = "from the meters' raw series"


def recorded_latency(kind: LatencyKind) -> str | None:
    """The recording rule's series for this latency, if the rules record it."""
    metric, p = kind
    if p not in RECORDED_PERCENTILES:
        return None
    return f"modelpilot:{LATENCY_SERIES[metric].removeprefix('modelpilot_')}:p{p}_rate2m"


def window_seconds(step: int, scrape_interval: int) -> int:
    # Each point's rate() covers twice the step (no request falls between points), and at
    # least four scrapes, so a missed scrape does not leave it with one sample.
    return max(2 * step, 4 * scrape_interval)


def kind_of(objective: Objective) -> LatencyKind:
    return objective.metric, objective.percentile


def latency_query(kind: LatencyKind) -> str:
    return f"latency:{kind[0]}@{kind[1]}"


def queries(
    step: int,
    kinds: Iterable[LatencyKind],
    matchers: str = "",
    scrape_interval: int = 15,
    recorded: bool = False,
) -> dict[str, str]:
    """Signal (or latency:metric@percentile) -> PromQL covering every model at once, or only
    those that `matchers` (e.g. 'namespace="a"') select; `recorded`: read the recording
    rules' series where they have one."""
    window = f"{window_seconds(step, scrape_interval)}s"
    m = f"{{{matchers}}}" if matchers else ""
    serving = ",".join(filter(None, [matchers, 'state=~"active|starting"']))

    def first_of(names: tuple[str, ...], how: str) -> str:
        return " or ".join(f"{how} by ({BY}) ({name}{m})" for name in names)

    out = {
        "concurrency": f"sum by ({BY}) (rate(modelpilot_concurrency_seconds_total{m}[{window}]))",
        "concurrency_gauge": f"sum by ({BY}) (avg_over_time(modelpilot_concurrent_requests{m}"
        f"[{window}]))",
        "rps_by_class": f"sum by ({BY}, status_class) (rate(modelpilot_requests_total{m}"
        f"[{window}]))",
        "replicas": f"max by ({BY}, state) (modelpilot_replicas{{{serving}}})",
        "desired": f"max by ({BY}) (modelpilot_desired_replicas{m})",
        "queue": f"max by ({BY}) (modelpilot_async_queue_size{m})",
        "engine_queue": first_of(ENGINE_QUEUE, "sum"),
        "kv_cache": first_of(KV_CACHE, "avg"),
    }
    for metric, p in sorted(set(kinds)):
        out[latency_query((metric, p))] = (
            f"histogram_quantile({p / 100}, sum by ({BY}, le) "
            f"(rate({LATENCY_SERIES[metric]}_bucket{m}[{window}])))"
        )
    if recorded:  # one series per model (and class) already: read as they are
        out["concurrency"] = f"modelpilot:concurrency:rate2m{m}"
        out["rps_by_class"] = f"modelpilot:requests:rate2m{m}"
        out["replicas"] = f"modelpilot:replicas:max{m}"
        out["desired"] = f"modelpilot:desired_replicas:max{m}"
        for kind in set(kinds):
            if rule := recorded_latency(kind):
                out[latency_query(kind)] = f"{rule}{m}"
    return out


def assemble(
    results: Mapping[str, list[dict[str, Any]]],
    times: list[float],
    step: float,
    kind_by_model: Mapping[Key, LatencyKind],
    into: dict[Key, History] | None = None,
) -> dict[Key, History]:
    """Range-query results -> one History per model on the shared grid (added to `into`,
    when given, as each answer arrives). A point with no sample stays None: missing is
    unknown, never zero."""
    histories: dict[Key, History] = {} if into is None else into

    def history(key: Key) -> History:
        if key not in histories:
            n = len(times)
            histories[key] = History(
                times=times,
                step=step,
                **{s: [None] * n for s in SIGNALS},
            )
        return histories[key]

    first, size = (times[0], len(times)) if times else (0.0, 0)

    def put(series: list[float | None], values: list[list[Any]], add: bool = False) -> None:
        # Points x series x signals: a million points for a fleet. Prometheus answers on
        # the grid, so a series whose first and last points are as far apart as it has
        # points has no gap: it goes in as one slice, with no arithmetic per point.
        n = len(values)
        i = int((values[0][0] - first) / step + 0.5) if n else -1
        if i >= 0 and i + n <= size and int((values[-1][0] - first) / step + 0.5) == i + n - 1:
            parsed = list(map(float, map(itemgetter(1), values)))
            if all(map(math.isfinite, parsed)):  # NaN, +Inf: the loop below skips them
                before = series[i : i + n]
                series[i : i + n] = (
                    [v + c if c is not None else v for v, c in zip(parsed, before, strict=True)]
                    if add
                    else parsed
                )
                return
        for ts, raw in values:
            i = int((ts - first) / step + 0.5)
            value = float(raw)  # decoded already, or as Prometheus writes it ("1.5", "NaN")
            if not 0 <= i < size or not math.isfinite(value):
                continue
            current = series[i]
            series[i] = value + current if add and current is not None else value

    for name, result in results.items():
        for item in result:
            labels = item.get("metric", {})
            key = (labels.get("namespace"), labels.get("model_deployment"))
            if not key[0] or not key[1]:
                continue
            k: Key = (str(key[0]), str(key[1]))
            values = item.get("values", [])
            if name == "concurrency":
                put(history(k).concurrency, values)
            elif name == "concurrency_gauge":
                h = history(k)
                if all(v is None for v in h.concurrency):  # fallback only
                    put(h.concurrency, values)
            elif name == "rps_by_class":
                h = history(k)
                put(h.rps, values, add=True)
                if labels.get("status_class") == "5xx":
                    put(h.errors, values)
            elif name == "replicas" and labels.get("state") in ("active", "starting"):
                put(getattr(history(k), labels["state"]), values)
            elif name == "desired":
                put(history(k).desired, values)
            elif name in ("queue", "engine_queue", "kv_cache"):
                put(getattr(history(k), name), values)
            elif name.split("#")[0] == latency_query(kind_by_model.get(k, DEFAULT_KIND)):
                put(history(k).latency, values)
    return histories


@dataclass(repr=False)
class Fetched:
    histories: dict[Key, History]
    queries: int
    read: str = FROM_RAW  # where the history came from (FROM_RULES or FROM_RAW)

    def __repr__(self) -> str:
        # Short: asyncio.run() formats its main task, result included, when it restores
        # the SIGINT handler, and 500 models' histories written out took 0.45 s each time.
        return f"Fetched({len(self.histories)} models, {self.queries} queries, {self.read})"


async def fetch(
    prometheus: PrometheusConnect,
    objectives: Mapping[Key, Objective],
    lookback_seconds: int,
    step: int,
    end: float,
    matchers: str = "",
    scrape_interval: int = 15,
    use_rules: bool = True,
) -> Fetched:
    """All signals for all models: one range query each (raises on Prometheus errors).
    `use_rules`: read the recording rules' series where Prometheus has them."""
    start = end - lookback_seconds
    kind_by_model = {key: kind_of(objective) for key, objective in objectives.items()}
    probe = use_rules and window_seconds(step, scrape_interval) == RULES_WINDOW
    phase = await _rules_phase(prometheus, start) if probe else None
    recorded = phase is not None
    if phase is None:
        first = start - start % step + step
    else:
        # On the rules' own evaluation instants (1 ms after, so each point reads the sample
        # taken there): a recorded rate is then the raw one, not up to an interval stale,
        # and every other signal is read at the same instant.
        first = phase + math.ceil((start - phase) / step) * step + 0.001
    times = [first + i * step for i in range(int((end - first) // step) + 1)]
    wanted = queries(
        step, kind_by_model.values() or [DEFAULT_KIND], matchers, scrape_interval, recorded
    )
    # A latency quantile over the buckets is by far the dearest query (every bucket of every
    # pod at every step) and Prometheus runs one query on one core: split it by model across
    # cores.
    if len(kind_by_model) >= 2 * LATENCY_SHARDS and not matchers:
        for kind in set(kind_by_model.values()):
            if recorded and recorded_latency(kind):
                continue
            name = latency_query(kind)
            models = sorted({m for (_, m), k in kind_by_model.items() if k == kind})
            size = -(-len(models) // LATENCY_SHARDS)
            del wanted[name]
            for i in range(0, len(models), size):
                # DNS-label names: only "." is special in a regex ("\\." inside PromQL quotes).
                regex = "|".join(m.replace(".", "\\\\.") for m in models[i : i + size])
                wanted[f"{name}#{i}"] = queries(
                    step, [kind], f'model_deployment=~"{regex}"', scrape_interval
                )[name]

    histories: dict[Key, History] = {}
    assembling = threading.Lock()

    def read(name: str, query: str) -> None:
        # Each answer goes into the histories as soon as it is parsed, and is dropped: a
        # fleet's answers are several MB of JSON each, and holding all of them parsed at
        # once cost 80 MiB more at 500 models.
        result = range_query(prometheus, query, times[0], times[-1], step)
        with assembling:
            assemble({name: result}, times, step, kind_by_model, into=histories)

    # The concurrency gauge stands in only for meters that lack the counter: read it only
    # when some model has no concurrency otherwise (a fleet's worth of points spared).
    gauge = wanted.pop("concurrency_gauge")
    made = len(wanted) + probe
    with gc_paused():
        await asyncio.gather(*(asyncio.to_thread(read, n, q) for n, q in wanted.items()))
        if any(
            all(v is None for v in h.concurrency) for k, h in histories.items() if k in objectives
        ):
            await asyncio.to_thread(read, "concurrency_gauge", gauge)
            made += 1
    return Fetched(histories, queries=made, read=FROM_RULES if recorded else FROM_RAW)


async def _rules_phase(prometheus: PrometheusConnect, start: float) -> float | None:
    """When the recording rules last evaluated before `start`, or None when they were not
    recording then: rules installed an hour ago would leave the rest of the lookback
    unknown, so until they cover all of it the raw series are read."""
    result = await asyncio.to_thread(
        prometheus.custom_query, f"max(timestamp({RULES_PROBE}))", params={"time": start}
    )
    return float(result[0]["value"][1]) if result else None


class _Series(TypedDict, total=False):
    metric: dict[str, str]
    values: list[tuple[float, float]]


class _Data(TypedDict):
    result: list[_Series]


class _Answer(TypedDict):
    data: _Data


# A fleet's range answer is megabytes of JSON with every value a string ("1.5"): msgspec,
# not strict, decodes it in C straight to floats (the standard parser, then float() on each
# string, took three times as long). "+Inf" is the one spelling of Prometheus's it does not
# take; "Inf" it does.
_ANSWER = msgspec.json.Decoder(_Answer, strict=False)


def range_query(
    prometheus: PrometheusConnect, query: str, start: float, end: float, step: int
) -> list[dict[str, Any]]:
    """A range query at exactly these instants, as the client's `custom_query_range` sends
    it (its session, headers, auth and timeout), but with the times to the millisecond (the
    client rounds them to whole seconds, which would read a recording rule's sample from an
    interval before) and the answer decoded by msgspec (above)."""
    session = prometheus._session
    response = session.request(
        method=prometheus._method,
        url=f"{prometheus.url}/api/v1/query_range",
        params={"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)},
        verify=session.verify,
        headers=prometheus.headers,
        auth=prometheus.auth,
        cert=session.cert,
        timeout=prometheus._timeout,
    )
    if response.status_code != 200:
        raise PrometheusApiClientException(
            f"HTTP Status Code {response.status_code} ({response.content[:1000]!r})"
        )
    body = response.content
    if b'"+Inf"' in body:
        body = body.replace(b'"+Inf"', b'"Inf"')
    result: list[dict[str, Any]] = _ANSWER.decode(body)["data"]["result"]  # type: ignore[assignment]
    return result
