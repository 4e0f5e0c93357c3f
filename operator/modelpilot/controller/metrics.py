"""The operator's /metrics: read at scrape time from the status the worker last wrote,
so a deleted ModelDeployment's series disappear with it."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelpilot.api import Key

LABELS = ["namespace", "model_deployment"]


class StatusCollector(Collector):
    def __init__(self, statuses: Callable[[], Mapping[Key, Mapping[str, Any]]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        replicas = GaugeMetricFamily(
            "modelpilot_replicas",
            "Replicas by state (starting, active, terminating).",
            labels=[*LABELS, "state"],
        )
        desired = GaugeMetricFamily(
            "modelpilot_desired_replicas",
            "Replicas the scaling formula asks for.",
            labels=LABELS,
        )
        readiness = GaugeMetricFamily(
            "modelpilot_pod_readiness",
            "Pods by Ready condition (true, false, unknown).",
            labels=[*LABELS, "condition"],
        )
        settings = GaugeMetricFamily(
            "modelpilot_autoscaling_setting",
            "Autoscaling settings in force (status.autoscaling.effective), for alerts.",
            labels=[*LABELS, "setting"],
        )
        recommended = GaugeMetricFamily(
            "modelpilot_recommended_value",
            "The advisor's recommended value for a setting (open recommendations only).",
            labels=[*LABELS, "setting"],
        )
        restarts = CounterMetricFamily(
            "modelpilot_container_restarts",
            "Container restarts by reason, across pod replacements.",
            labels=[*LABELS, "reason"],
        )
        for (namespace, name), status in sorted(self.statuses().items()):
            counts = status.get("replicas", {})
            for state in ("starting", "active", "terminating"):
                replicas.add_metric([namespace, name, state], counts.get(state, 0))
            # The scaler's figure when it has one (it leads the Deployment on the way down).
            wanted = status.get("autoscaling", {}).get("desiredReplicas")
            desired.add_metric(
                [namespace, name], wanted if wanted is not None else counts.get("desired", 0)
            )
            pods = status.get("pods", {})
            for condition, field in (
                ("true", "ready"),
                ("false", "notReady"),
                ("unknown", "unknown"),
            ):
                readiness.add_metric([namespace, name, condition], pods.get(field, 0))
            for setting, value in status.get("autoscaling", {}).get("effective", {}).items():
                settings.add_metric([namespace, name, setting], value)
            for rec in status.get("advisor", {}).get("recommendations", []):
                recommended.add_metric([namespace, name, rec["setting"]], rec["recommended"])
            for item in status.get("restarts", {}).get("byReason", []):
                restarts.add_metric([namespace, name, item["reason"]], item["count"])
        yield from (replicas, desired, readiness, restarts, recommended, settings)
