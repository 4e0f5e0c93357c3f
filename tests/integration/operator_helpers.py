"""Small helpers for tests that drive the operator through the API."""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

from modelpilot.api import GROUP, MODEL_LABEL, PLURAL, VERSION

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 20,
    interval: float = 0.2,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Retry `check` until it returns without an AssertionError, a KeyError (status not
    written yet), an ApiException 404 (object not created yet) or one of `retry_on`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, client.ApiException, *retry_on) as exc:
            if (
                isinstance(exc, client.ApiException)
                and exc.status != 404
                and not isinstance(exc, retry_on)
            ):
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def model_spec(port: int = 8000, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "port": port,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "model",
                        "image": "example.invalid/model:1",
                        "ports": [{"containerPort": port}],
                        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
                    }
                ]
            }
        },
    }
    spec.update(overrides)
    return spec


class Models:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(
        self, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(name).get("status", {})
        return status

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, {"status": status}
        )

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        raise AssertionError(f"no {type_} condition on {name}")


def pod_labels(model: str) -> dict[str, str]:
    return {MODEL_LABEL: model}


def replicas(admin_api: client.ApiClient, namespace: str, name: str) -> int:
    return int(
        client.AppsV1Api(admin_api).read_namespaced_deployment(name, namespace).spec.replicas
    )


def equal(got: object, want: object) -> None:
    """An assertion to retry with `eventually`."""
    assert got == want
