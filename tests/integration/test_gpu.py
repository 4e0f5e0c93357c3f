"""GPU series in a real Prometheus (DCGM exporter's and the agent's) -> status.gpu of
the right ModelDeployment, and nothing for a model without GPU series."""

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, MetricsHandler

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.kubectl import kubectl
from modelpilot.devcluster.kubelet import FakeKubelet
from modelpilot.gpu.summary import MIB

from .operator_helpers import Models, eventually, model_spec, pod_labels

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def gpu_exporter(cluster: controlplane.ClusterState, namespace: str) -> Iterator[None]:
    registry = CollectorRegistry()
    dcgm = {"exported_namespace": namespace, "exported_pod": "llm-0", "gpu": "0", "UUID": "G0"}
    for name, value in (
        ("DCGM_FI_DEV_GPU_UTIL", 75),
        ("DCGM_FI_DEV_FB_USED", 2048),
        ("DCGM_FI_DEV_FB_FREE", 6144),
    ):
        Gauge(name, name, list(dcgm), registry=registry).labels(**dcgm).set(value)
    agent = {
        "namespace": namespace,
        "pod": "embed-0",
        "container": "model",
        "gpu": "0",
        "gpu_uuid": "G1",
    }
    for name, value in (
        ("modelpilot_gpu_utilization_percent", 33),
        ("modelpilot_gpu_memory_used_bytes", 1e9),
        ("modelpilot_gpu_memory_total_bytes", 8e9),
    ):
        Gauge(name, name, list(agent), registry=registry).labels(**agent).set(value)
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = cluster.prometheus_targets_dir / f"gpu-{namespace}.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{server.server_address[1]}"]}]))
    yield
    target.unlink(missing_ok=True)
    server.shutdown()


def test_gpu_usage_in_status(
    gpu_exporter: None,
    admin_api: object,
    namespace: str,
    kubelet: FakeKubelet,
    kubeconfigs: tuple[Path, Path],
) -> None:
    models = Models(admin_api, namespace)  # type: ignore[arg-type]
    for name in ("llm", "embed", "cpu-only"):
        models.create(name, model_spec())
        kubelet.create_pod(namespace, f"{name}-0", labels=pod_labels(name))
        kubelet.set_status(namespace, f"{name}-0", ready="True")

    def summarised() -> None:
        assert models.status("llm")["gpu"] == {
            "utilizationPercent": 75,
            "memoryUsedBytes": 2048 * MIB,
            "memoryTotalBytes": 8192 * MIB,
        }
        assert models.status("embed")["gpu"] == {
            "utilizationPercent": 33,
            "memoryUsedBytes": 1_000_000_000,
            "memoryTotalBytes": 8_000_000_000,
        }

    eventually(summarised, timeout=60)
    assert "gpu" not in models.status("cpu-only")
    out = kubectl(kubeconfigs[0], "get", "md", "llm", "-n", namespace)
    header, row = out.splitlines()[:2]
    assert row.split()[header.split().index("GPU%")] == "75"
