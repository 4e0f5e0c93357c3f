"""The real node's configuration and its helpers, as plain data."""

import re
from pathlib import Path

from modelpilot.devcluster import images, node
from modelpilot.devcluster.discovery import pod_targets
from modelpilot.devcluster.prometheus import readme_scrape_jobs

REPO = Path(__file__).resolve().parents[2]

POD = {
    "metadata": {
        "name": "chat-abc",
        "namespace": "team-a",
        "uid": "u1",
        "labels": {"modelpilot.dev/model-deployment": "chat", "app": "x"},
        "annotations": {"prometheus.io/scrape": "true"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "chat-5d", "controller": True}],
    },
    "spec": {
        "nodeName": "mp-node",
        "containers": [
            {"name": "model", "image": "m:1", "ports": [{"name": "http", "containerPort": 8000}]},
            {
                "name": "modelpilot-meter",
                "image": "mp:1",
                "ports": [
                    {"name": "meter-http", "containerPort": 8080},
                    {"name": "meter-metrics", "containerPort": 9090},
                ],
            },
        ],
    },
    "status": {
        "podIP": "10.88.0.7",
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def test_pod_discovery_makes_a_target_per_container_port_with_the_pod_roles_labels() -> None:
    targets = pod_targets(POD)
    assert [t["targets"] for t in targets] == [
        ["10.88.0.7:8000"],
        ["10.88.0.7:8080"],
        ["10.88.0.7:9090"],
    ]
    metrics = targets[2]["labels"]
    assert metrics["__meta_kubernetes_pod_label_modelpilot_dev_model_deployment"] == "chat"
    assert metrics["__meta_kubernetes_pod_labelpresent_app"] == "true"
    assert metrics["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] == "true"
    assert metrics["__meta_kubernetes_pod_container_port_name"] == "meter-metrics"
    assert metrics["__meta_kubernetes_pod_container_name"] == "modelpilot-meter"
    assert metrics["__meta_kubernetes_namespace"] == "team-a"
    assert metrics["__meta_kubernetes_pod_name"] == "chat-abc"
    assert metrics["__meta_kubernetes_pod_ready"] == "true"
    assert metrics["__meta_kubernetes_pod_controller_kind"] == "ReplicaSet"


def test_a_pod_without_an_address_is_no_target() -> None:
    assert pod_targets({**POD, "status": {"phase": "Pending"}}) == []


def test_the_node_prometheus_runs_the_readmes_scrape_jobs_unchanged_but_for_discovery() -> None:
    discovery = {"file_sd_configs": [{"files": ["/x/pods.json"]}]}
    jobs = readme_scrape_jobs(REPO / "README.md", discovery)
    assert [job["job_name"] for job in jobs] == [
        "modelpilot-meter",
        "modelpilot-operator",
        "modelpilot-engine",
    ]
    for job in jobs:
        assert "kubernetes_sd_configs" not in job
        assert job["file_sd_configs"] == discovery["file_sd_configs"]
    meter, operator, engine = jobs
    assert operator["relabel_configs"][0]["regex"] == "modelpilot-operator"
    assert meter["honor_labels"] is True
    assert [r.get("regex") for r in meter["relabel_configs"][:2]] == [".+", "meter-metrics"]
    assert len(meter["relabel_configs"]) == 4
    assert engine["relabel_configs"][1]["regex"] == "meter-http"
    assert len(engine["relabel_configs"]) == 5


def test_pods_route_only_to_pods_and_services_and_are_not_masqueraded() -> None:
    bridge = node.cni_config(Path("/x/ipam"))["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge.get("isDefaultGateway") is not True
    routes = [r["dst"] for r in bridge["ipam"]["routes"]]
    assert routes == [node.POD_SUBNET, node.SERVICE_CIDR]
    assert "0.0.0.0/0" not in routes


def test_the_kubelet_serves_only_on_the_bridge_and_only_to_authenticated_callers() -> None:
    config = node.kubelet_config(Path("/pki/ca.crt"), 10250, 10248)
    assert config["address"] == node.HOST_IP
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["resolvConf"] == ""  # pods look nothing up outside


def test_containerd_gets_its_own_root_socket_and_the_pause_image(tmp_path: Path) -> None:
    text = node.containerd_config(
        tmp_path / "containerd", tmp_path / "c.sock", tmp_path / "net.d", "local/pause:1"
    )
    assert f'root = "{tmp_path / "containerd" / "root"}"' in text
    assert f'address = "{tmp_path / "c.sock"}"' in text
    assert 'sandbox_image = "local/pause:1"' in text
    assert f'conf_dir = "{tmp_path / "net.d"}"' in text


def _dist(site: Path, name: str, requires: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Name: {name}"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_what_an_older_python_needs_beyond_the_lock_is_found(tmp_path: Path) -> None:
    _dist(tmp_path, "redis", ['async-timeout>=4.0.3; python_full_version < "3.11.3"'])
    _dist(tmp_path, "aiohttp", ["yarl>=1.17", 'brotli; extra == "speedups"'])
    _dist(tmp_path, "yarl", [])
    assert images.missing_requirements(tmp_path, "3.11.2") == ["async-timeout>=4.0.3"]
    assert images.missing_requirements(tmp_path, "3.11.7") == []


def test_image_tags_follow_their_content(tmp_path: Path) -> None:
    package = tmp_path / "operator" / "modelpilot"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "requirements.lock").write_text("aiohttp==3.14.5\n")
    first = images.modelpilot_image(tmp_path).tag
    assert images.modelpilot_image(tmp_path).tag == first
    (package / "cli.py").write_text("print()\n")
    assert images.modelpilot_image(tmp_path).tag != first


def test_the_dockerfiles_build_what_make_images_builds() -> None:
    """Same distribution and Python, same package set (the lock file), same user."""
    for dockerfile in (REPO / "Dockerfile", REPO / "examples" / "sample-model" / "Dockerfile"):
        text = dockerfile.read_text()
        base = re.search(r"^FROM python:(\d+\.\d+)-slim-(\w+)$", text, flags=re.M)
        assert base is not None, f"{dockerfile}: FROM python:X.Y-slim-SUITE"
        assert base.group(2) == images.SUITE
        assert base.group(1) == images.PYTHON_MINOR
        assert "--uid 65532" in text and "USER 65532:65532" in text
        assert "requirements.lock" in text
    assert "pip install --no-cache-dir -r requirements.lock" in (REPO / "Dockerfile").read_text()
