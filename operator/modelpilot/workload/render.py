"""The owned Deployment and Service for a ModelDeployment, as API objects (dicts)."""

import copy
from typing import Any

from modelpilot.api import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL
from modelpilot.api.spec import ModelDeploymentSpec


def selector_labels(name: str) -> dict[str, str]:
    """Selects exactly this model's pods (names are unique within a namespace)."""
    return {MODEL_LABEL: name}


def object_labels(name: str) -> dict[str, str]:
    return {**selector_labels(name), MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/name": name}


def clamp_replicas(current: int | None, spec: ModelDeploymentSpec) -> int:
    """Keep the scaler's count (or start at min) inside [minReplicas, maxReplicas]."""
    low, high = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas
    return min(max(current if current is not None else low, low), high)


METER_CONTAINER = "modelpilot-meter"
METER_PORT_NAME = "meter-http"
METER_METRICS_PORT_NAME = "meter-metrics"
DEFAULT_GRACE_SECONDS = 30


def meter_container(
    name: str, spec: ModelDeploymentSpec, image: str, grace_seconds: int
) -> dict[str, Any]:
    """The meter in front of the model server: same pod, so it reaches it on loopback."""
    meter = spec.meter
    return {
        "name": METER_CONTAINER,
        "image": meter.image or image,
        "args": [
            "meter",
            f"--listen=0.0.0.0:{meter.port}",
            f"--upstream=http://127.0.0.1:{spec.port}",
            f"--metrics-listen=0.0.0.0:{meter.metrics_port}",
            f"--model-deployment={name}",
            f"--max-concurrency={meter.max_concurrency}",
            f"--queue-timeout={meter.queue_timeout_seconds}",
            # Finish in-flight requests before the kubelet's SIGKILL.
            f"--drain-timeout={max(grace_seconds - 5, 1)}",
            *async_args(spec),
        ],
        "env": async_env(spec),
        "ports": [
            {"name": METER_PORT_NAME, "containerPort": meter.port, "protocol": "TCP"},
            {
                "name": METER_METRICS_PORT_NAME,
                "containerPort": meter.metrics_port,
                "protocol": "TCP",
            },
        ],
        # Ready when the model server is (the meter asks it) and not draining.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": METER_METRICS_PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METER_METRICS_PORT_NAME},
            "periodSeconds": 10,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def async_args(spec: ModelDeploymentSpec) -> list[str]:
    queue = spec.async_
    if queue is None:
        return []
    return [
        f"--async-max-queue-seconds={queue.max_queue_seconds}",
        f"--async-result-ttl={queue.result_retention_seconds}",
        f"--async-visibility-timeout={queue.visibility_timeout_seconds}",
        f"--async-max-attempts={queue.max_attempts}",
        *(f"--async-webhook-host={host}" for host in queue.webhook_hosts),
    ]


def async_env(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The namespace (it names the model's queue) and, from the user's Secrets, the broker
    URL and webhook key: in the environment, never in args (which `ps` and the API show)."""
    env: list[dict[str, Any]] = [
        {
            "name": "MODELPILOT_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    ]
    queue = spec.async_
    if queue is None:
        return env
    secrets = [("MODELPILOT_ASYNC_BROKER", queue.broker_secret_ref)]
    if queue.webhook_secret_ref is not None:
        secrets.append(("MODELPILOT_ASYNC_WEBHOOK_SECRET", queue.webhook_secret_ref))
    for variable, ref in secrets:
        env.append(
            {"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    return env


def pod_template(name: str, spec: ModelDeploymentSpec, meter_image: str) -> dict[str, Any]:
    """The user's template with our labels and, when enabled, the meter; the model
    containers stay exactly as written."""
    template = copy.deepcopy(spec.template)
    metadata = template["metadata"] = template.get("metadata") or {}  # absent or null
    metadata["labels"] = {**(metadata.get("labels") or {}), **object_labels(name)}
    if spec.meter.enabled:
        pod_spec = template.setdefault("spec", {})
        grace = pod_spec.get("terminationGracePeriodSeconds")
        if not isinstance(grace, int):  # absent (or null): the Kubernetes default
            grace = DEFAULT_GRACE_SECONDS
        pod_spec["containers"] = [
            *pod_spec.get("containers", []),
            meter_container(name, spec, meter_image, grace),
        ]
        # For Prometheus' kubernetes_sd pod role (see README) and PodMonitors.
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(spec.meter.metrics_port),
            "prometheus.io/path": "/metrics",
        }
    return template


def _metadata(name: str, namespace: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": object_labels(name),
        "ownerReferences": [owner],
    }


def deployment(
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    owner: dict[str, Any],
    replicas: int | None,
    meter_image: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, owner),
        "spec": {
            "replicas": clamp_replicas(replicas, spec),
            "selector": {"matchLabels": selector_labels(name)},
            "template": pod_template(name, spec, meter_image),
            "revisionHistoryLimit": 3,
        },
    }


def service(
    name: str, namespace: str, spec: ModelDeploymentSpec, owner: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, owner),
        "spec": {
            "selector": selector_labels(name),
            # Through the meter when it is on, so every request is measured.
            "ports": [
                {
                    "name": "http",
                    "port": spec.port,
                    "protocol": "TCP",
                    "targetPort": METER_PORT_NAME if spec.meter.enabled else spec.port,
                }
            ],
        },
    }


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
