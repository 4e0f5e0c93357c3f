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


def pod_template(name: str, spec: ModelDeploymentSpec) -> dict[str, Any]:
    template = copy.deepcopy(spec.template)
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **object_labels(name)}
    # The meter sidecar is injected here (issue "meter"); the model containers stay as written.
    return template


def deployment(
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    owner: dict[str, Any],
    replicas: int | None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": object_labels(name),
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": clamp_replicas(replicas, spec),
            "selector": {"matchLabels": selector_labels(name)},
            "template": pod_template(name, spec),
            "revisionHistoryLimit": 3,
        },
    }


def service(
    name: str, namespace: str, spec: ModelDeploymentSpec, owner: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": object_labels(name),
            "ownerReferences": [owner],
        },
        "spec": {
            "selector": selector_labels(name),
            "ports": [
                {"name": "http", "port": spec.port, "targetPort": spec.port, "protocol": "TCP"}
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
