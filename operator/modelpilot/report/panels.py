"""The metrics tab's panels, one per graph of the product's seed page. The single source of
both the Grafana dashboard (`python -m modelpilot.report.panels`, written to
manifests/monitoring/dashboard.json) and `modelpilot report`."""

import json
from dataclasses import dataclass
from typing import Any

SEL = 'namespace="$namespace",model_deployment="$model_deployment"'
POD = 'namespace="$namespace",pod=~"$model_deployment-.*"'


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana unit: reqps, s, bytes, short, percent
    description: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"


def _percentiles(metric: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            f"histogram_quantile({p / 100}, sum by (le) "
            f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            f"p{p}",
        )
        for p in (50, 90, 95, 99)
    )


PANELS = (
    Panel(
        "Inference volume",
        "reqps",
        "Requests per second by status class (2xx, 4xx, 5xx; 499 = client went away).",
        (
            (
                f"sum by (status_class) (rate(modelpilot_requests_total{{{SEL}}}"
                f"[$__rate_interval]))",
                "{{status_class}}",
            ),
        ),
    ),
    Panel(
        "End-to-end response time",
        "s",
        "Request received to last byte sent: queueing plus inference.",
        _percentiles("modelpilot_end_to_end_response_time_seconds"),
    ),
    Panel(
        "Inference time",
        "s",
        "Time in the model server only.",
        _percentiles("modelpilot_inference_time_seconds"),
    ),
    Panel(
        "Time to first byte",
        "s",
        "Includes queueing; a proxy for time to first token where the model does not stream "
        "OpenAI-style responses.",
        _percentiles("modelpilot_time_to_first_byte_seconds"),
    ),
    Panel(
        "Time to first token",
        "s",
        "Streamed OpenAI-compatible requests: received to the first chunk carrying content "
        "(includes queueing).",
        _percentiles("modelpilot_time_to_first_token_seconds"),
    ),
    Panel(
        "Time per output token",
        "s",
        "Streamed OpenAI-compatible requests: the mean gap between output tokens after the first.",
        _percentiles("modelpilot_time_per_output_token_seconds"),
    ),
    Panel(
        "Tokens",
        "short",
        "Input and output tokens per second of OpenAI-compatible requests (from the "
        "responses' usage, or streamed deltas counted).",
        (
            (
                f"sum by (direction) (rate(modelpilot_tokens_total{{{SEL}}}[$__rate_interval]))",
                "{{direction}}",
            ),
        ),
    ),
    Panel(
        "Request size",
        "bytes",
        "A proxy for input tokens where the Tokens panel has no data.",
        _percentiles("modelpilot_request_size_bytes"),
    ),
    Panel(
        "Response size",
        "bytes",
        "A proxy for generated tokens where the Tokens panel has no data.",
        _percentiles("modelpilot_response_size_bytes"),
    ),
    Panel(
        "Replicas",
        "short",
        "Active (ready) and starting replicas, with what the scaler wants. A lasting gap "
        "between starting and active is a cold start.",
        (
            (
                f'sum by (state) (modelpilot_replicas{{{SEL},state=~"active|starting"}})',
                "{{state}}",
            ),
            (f"max(modelpilot_desired_replicas{{{SEL}}})", "desired"),
        ),
    ),
    Panel(
        "Traffic-ready pods",
        "short",
        "Pods by Ready condition. A lasting 'false' band in steady state means failing "
        "readiness probes or slow termination.",
        ((f"sum by (condition) (modelpilot_pod_readiness{{{SEL}}})", "{{condition}}"),),
    ),
    Panel(
        "Restarts",
        "short",
        "Container restarts since creation, by reason (OOMKilled, Error, LivenessProbeFailed).",
        ((f"sum by (reason) (modelpilot_container_restarts_total{{{SEL}}})", "{{reason}}"),),
    ),
    Panel(
        "Concurrent requests",
        "short",
        "In-flight plus queued requests, the autoscaling signal, with the concurrency "
        "target times the active replicas.",
        (
            (
                f"sum(rate(modelpilot_concurrency_seconds_total{{{SEL}}}[$__rate_interval]))",
                "concurrency",
            ),
            (
                f'max(modelpilot_autoscaling_setting{{{SEL},setting="concurrencyTarget"}}) * '
                f'sum(modelpilot_replicas{{{SEL},state="active"}})',
                "target x active replicas",
            ),
        ),
    ),
    Panel(
        "CPU usage",
        "short",
        "Cores used per pod (cAdvisor); short spikes may not show.",
        (
            (
                f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{POD},container!="",'
                f'container!="POD"}}[$__rate_interval]))',
                "{{pod}}",
            ),
        ),
    ),
    Panel(
        "Memory usage",
        "bytes",
        "Working set per pod (cAdvisor).",
        (
            (
                f'sum by (pod) (container_memory_working_set_bytes{{{POD},container!="",'
                f'container!="POD"}})',
                "{{pod}}",
            ),
        ),
    ),
    Panel(
        "GPU usage",
        "percent",
        "Share of time a kernel ran on the GPU (GPU agent, or DCGM exporter).",
        (
            (f"avg by (pod) (modelpilot_gpu_utilization_percent{{{POD}}})", "{{pod}}"),
            (
                'avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{exported_namespace="$namespace",'
                'exported_pod=~"$model_deployment-.*"})',
                "{{exported_pod}} (DCGM)",
            ),
        ),
    ),
    Panel(
        "GPU memory",
        "bytes",
        "GPU memory in use.",
        (
            (f"sum by (pod) (modelpilot_gpu_memory_used_bytes{{{POD}}})", "{{pod}}"),
            (
                'sum by (exported_pod) (DCGM_FI_DEV_FB_USED{exported_namespace="$namespace",'
                'exported_pod=~"$model_deployment-.*"}) * 1048576',
                "{{exported_pod}} (DCGM)",
            ),
        ),
    ),
    Panel(
        "Async queue size",
        "short",
        "Async requests waiting; a growing queue means they arrive faster than served.",
        ((f"max(modelpilot_async_queue_size{{{SEL}}})", "queued"),),
    ),
    Panel(
        "Time in async queue",
        "s",
        "How long async requests waited before running.",
        _percentiles("modelpilot_time_in_async_queue_seconds"),
    ),
    Panel(
        "Async webhooks",
        "reqps",
        "Webhook deliveries of async results: delivered, retried (another attempt follows), "
        "gave up (the last attempt failed).",
        (
            (
                f"sum by (outcome) (rate(modelpilot_async_webhook_deliveries_total{{{SEL}}}"
                "[$__rate_interval]))",
                "{{outcome}}",
            ),
        ),
    ),
    Panel(
        "Recommendations",
        "short",
        "The advisor's open recommendations: the value per setting (details: kubectl describe md).",
        ((f"modelpilot_recommended_value{{{SEL}}}", "{{setting}}"),),
        kind="table",
    ),
)


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard, with `namespace` and `model_deployment` variables."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = [
        {
            "id": i + 1,
            "title": p.title,
            "type": p.kind,
            "description": p.description,
            "datasource": source,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "targets": [
                {"expr": e, "legendFormat": legend, "refId": chr(65 + n)}
                for n, (e, legend) in enumerate(p.targets)
            ],
        }
        for i, p in enumerate(PANELS)
    ]
    return {
        "title": "ModelPilot: model metrics",
        "uid": "modelpilot-model",
        "schemaVersion": 39,
        "tags": ["modelpilot"],
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "namespace",
                    "type": "query",
                    "datasource": source,
                    "refresh": 2,
                    "query": "label_values(modelpilot_requests_total, namespace)",
                },
                {
                    "name": "model_deployment",
                    "type": "query",
                    "datasource": source,
                    "refresh": 2,
                    "query": 'label_values(modelpilot_requests_total{namespace="$namespace"}, '
                    "model_deployment)",
                },
            ]
        },
        "panels": panels,
    }


def substitute(expr: str, namespace: str, model: str, rate_interval: str) -> str:
    return (
        expr.replace("$namespace", namespace)
        .replace("$model_deployment", model)
        .replace("$__rate_interval", rate_interval)
    )


if __name__ == "__main__":
    print(json.dumps(dashboard(), indent=2))
