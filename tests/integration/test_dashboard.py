"""Every PromQL expression of the Grafana dashboard, with its variables substituted, runs
without error in a real Prometheus holding the series it reads, and finds data."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_api_client import PrometheusConnect

from modelpilot.devcluster.prometheus import PrometheusServer, Series, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import catalogue, series, simulate
from modelpilot.report.panels import substitute

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "dashboard.json"
NS, MODEL = "dash", "thrash"
HOUR = 3600


def extras(start: float, end: float) -> list[Series]:
    """The series the scenario simulator does not write: other histograms, readiness,
    restarts, settings, GPU and cAdvisor, for the same model and pod."""
    times = range(int(start), int(end), 15)
    meter = {"namespace": NS, "model_deployment": MODEL, "pod": f"{MODEL}-0"}
    operator = {"namespace": NS, "model_deployment": MODEL}
    out = []

    def flat(name: str, labels: dict[str, str], value: float) -> None:
        out.append(Series(name=name, labels=labels, samples=[(t, value) for t in times]))

    def growing(name: str, labels: dict[str, str], per_second: float) -> None:
        out.append(
            Series(name=name, labels=labels, samples=[(t, per_second * (t - start)) for t in times])
        )

    for histogram in (
        "modelpilot_inference_time_seconds",
        "modelpilot_time_to_first_byte_seconds",
        "modelpilot_request_size_bytes",
        "modelpilot_response_size_bytes",
        "modelpilot_time_to_first_token_seconds",
        "modelpilot_time_per_output_token_seconds",
    ):
        for le, share in (("0.1", 0.5), ("1", 0.9), ("1000", 1.0), ("+Inf", 1.0)):
            growing(f"{histogram}_bucket", {**meter, "status_class": "2xx", "le": le}, 10 * share)
    for direction, per_second in (("input", 400), ("output", 90)):
        growing(
            "modelpilot_tokens_total",
            {**meter, "direction": direction, "source": "usage"},
            per_second,
        )
    for le, share in (("1", 0.5), ("10", 1.0), ("+Inf", 1.0)):
        growing("modelpilot_time_in_async_queue_seconds_bucket", {**meter, "le": le}, share)
    for outcome, per_second in (("delivered", 0.5), ("retried", 0.05), ("gave_up", 0.01)):
        growing(
            "modelpilot_async_webhook_deliveries_total", {**meter, "outcome": outcome}, per_second
        )
    for condition, value in (("true", 2), ("false", 1), ("unknown", 0)):
        flat("modelpilot_pod_readiness", {**operator, "condition": condition}, value)
    flat("modelpilot_container_restarts_total", {**operator, "reason": "OOMKilled"}, 3)
    flat("modelpilot_autoscaling_setting", {**operator, "setting": "concurrencyTarget"}, 2)
    flat("modelpilot_recommended_value", {**operator, "setting": "scaleDownDelaySeconds"}, 1320)
    for state, value in (("active", 3), ("queued", 1)):
        flat("modelpilot_concurrent_requests", {**meter, "state": state}, value)
    flat("modelpilot_async_queue_size", meter, 4)
    gpu = {"namespace": NS, "pod": f"{MODEL}-0", "container": "model", "gpu": "0", "gpu_uuid": "G0"}
    flat("modelpilot_gpu_utilization_percent", gpu, 71)
    flat("modelpilot_gpu_memory_used_bytes", gpu, 2e9)
    dcgm = {"exported_namespace": NS, "exported_pod": f"{MODEL}-0", "UUID": "G0"}
    flat("DCGM_FI_DEV_GPU_UTIL", dcgm, 70)
    flat("DCGM_FI_DEV_FB_USED", dcgm, 2048)
    cadvisor = {"namespace": NS, "pod": f"{MODEL}-0", "container": "model"}
    growing("container_cpu_usage_seconds_total", cadvisor, 1.5)
    flat("container_memory_working_set_bytes", cadvisor, 6e9)
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    end = time.time() - 30
    start = end - 2 * HOUR
    scenario = next(s for s in catalogue() if s.name == MODEL)
    data = series(simulate(scenario, 2 * HOUR), start, NS, MODEL) + extras(start, end)
    server = PrometheusServer(tmp_path_factory.mktemp("dashboard") / "prometheus")
    backfill(to_openmetrics(data), server.data_dir)
    server.start()
    yield server
    server.stop()


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_dashboard_shape() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert {"namespace", "model_deployment"} <= set(variables)
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Inference volume",
        "End-to-end response time",
        "Inference time",
        "Time to first byte",
        "Time to first token",
        "Time per output token",
        "Tokens",
        "Request size",
        "Response size",
        "Replicas",
        "Traffic-ready pods",
        "Restarts",
        "Concurrent requests",
        "CPU usage",
        "Memory usage",
        "GPU usage",
        "GPU memory",
        "Async queue size",
        "Time in async queue",
        "Async webhooks",
        "Recommendations",
    } <= titles


def test_every_panel_query_runs_and_finds_data(prometheus: PrometheusServer) -> None:
    prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    at = {"time": str(time.time() - 120)}
    empty = [
        f"{title}: {expr}"
        for title, expr in expressions()
        # custom_query raises on a PromQL error.
        if not prom.custom_query(substitute(expr, NS, MODEL, "2m"), params=at)
    ]
    assert empty == [], "queries without data:\n" + "\n".join(empty)
