"""The observer on a real node: kubelet reports a pod Ready -> status.replicas.active.

ModelPilot installed from manifests/ on the local node (the operator in its pod, as users
run it); `--models` sample models of one replica each, readiness probed every second. Each
round makes every model's /health fail (the pod goes NotReady), then pass again: the
kubelet's probe marks the pod Ready and patches its status. Timed per transition, from the
same client: when a watch on the pods sees Ready=True (the kubelet's write, the floor the
operator cannot beat) and when a watch on the ModelDeployments sees `replicas.active` back
at 1. Prints p50/p99 of that difference next to the pod watch's own delivery.

Run: .venv/bin/python benchmarks/observer.py --real-node [--models 5] [--transitions 50]
(needs root; `benchmarks/observer.py` alone runs the 1,000 x 10 fake-kubelet measurement).
"""

import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from modelpilot.advisor.rules import percentile
from modelpilot.api import GROUP, MODEL_LABEL, PLURAL, VERSION
from modelpilot.devcluster import controlplane, install
from modelpilot.devcluster.processes import wait_until

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".local" / "bench-node"
NAMESPACE = "bench-node"


class Timeline(threading.Thread):
    """(when, key, value) for every watch event of a collection; `read` gives key, value."""

    def __init__(self, list_fn: Any, read: Any) -> None:
        super().__init__(daemon=True)
        self.list_fn, self.read = list_fn, read
        self.events: list[tuple[float, str, Any]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        for event in watch.Watch().stream(self.list_fn, NAMESPACE, timeout_seconds=0):
            key, value = self.read(event["object"])
            with self.lock:
                self.events.append((time.monotonic(), key, value))

    def first_after(self, since: float, name: str, value: Any) -> float | None:
        with self.lock:
            return next(
                (t for t, n, v in self.events if t >= since and n == name and v == value), None
            )


def _pod_ready(pod: client.V1Pod) -> tuple[str, bool]:
    model = (pod.metadata.labels or {}).get(MODEL_LABEL, "")
    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    return model, ready and pod.metadata.deletion_timestamp is None


def _active(md: dict[str, Any]) -> int | None:
    return ((md.get("status") or {}).get("replicas") or {}).get("active")


def _model_active(md: dict[str, Any]) -> tuple[str, int | None]:
    return md["metadata"]["name"], _active(md)


def _model(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "port": 8000,
            "template": {
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "args": ["--host", "0.0.0.0", "--port", "8000"],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": 8000},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                }
            },
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
            "advisor": {"mode": "Off"},
        },
    }


def _set_health(pod_ip: str, ok: bool) -> None:
    request = urllib.request.Request(
        f"http://{pod_ip}:8000/health?ok={int(ok)}", data=b"", method="POST"
    )
    urllib.request.urlopen(request, timeout=5).close()


def _figures(values: list[float]) -> dict[str, float]:
    return {
        "transitions": len(values),
        "p50 ms": round(statistics.median(values) * 1000, 1),
        "p99 ms": round(percentile(values, 99) * 1000, 1),
        "max ms": round(max(values) * 1000, 1),
    }


def run(models: int, transitions: int) -> None:
    state = controlplane.up(STATE_DIR, node=True)
    try:
        api = config.new_client_from_config(str(state.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        images = install.on_node(state)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        names = [f"ready-{i}" for i in range(models)]
        for name in names:
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                PLURAL,
                _model(name, images["modelpilot.local/sample-model"]),
            )

        def all_active() -> bool:
            found = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
            return sum(1 for md in found["items"] if _active(md) == 1) == models

        if not wait_until(all_active, 180, interval=0.5):
            first = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, names[0])
            raise SystemExit(f"the models' replicas did not start: {first.get('status')}")
        pods = {
            _pod_ready(p)[0]: p.status.pod_ip
            for p in core.list_namespaced_pod(NAMESPACE, label_selector=MODEL_LABEL).items
        }
        pod_line = Timeline(core.list_namespaced_pod, _pod_ready)
        status_line = Timeline(
            lambda namespace, **kw: custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, **kw
            ),
            _model_active,
        )
        pod_line.start()
        status_line.start()
        time.sleep(1)  # both watches open
        delays: list[float] = []  # pod Ready seen -> status active seen (the operator)
        kubelet: list[float] = []  # health restored -> pod Ready seen (probe, kubelet, API)
        rounds = -(-transitions // models)
        for _ in range(rounds):
            for name in names:
                _set_health(pods[name], False)
            assert wait_until(
                lambda: all(
                    _active(
                        custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, n)
                    )
                    == 0
                    for n in names
                ),
                30,
                interval=0.2,
            ), "a model was not seen NotReady"
            since = time.monotonic()
            for name in names:
                _set_health(pods[name], True)

            def seen_all(since: float = since) -> bool:
                return all(status_line.first_after(since, n, 1) is not None for n in names)

            assert wait_until(seen_all, 30, interval=0.1), "a model was not seen Ready again"
            for name in names:
                ready_at = pod_line.first_after(since, name, True)
                active_at = status_line.first_after(since, name, 1)
                if ready_at is not None and active_at is not None:
                    delays.append(active_at - ready_at)
                    kubelet.append(ready_at - since)
        print(
            json.dumps(
                {
                    "real node: pod Ready -> status.replicas.active": _figures(delays),
                    "reference, same transitions: /health passing again -> pod Ready "
                    "(readiness probe every 1 s, kubelet, API server)": _figures(kubelet),
                }
            )
        )
    finally:
        controlplane.down(STATE_DIR)
