"""The demo's local runtime: how a pod's containers become local commands and probes."""

import sys
from pathlib import Path

from modelpilot.devcluster.runtime import (
    ContainerRun,
    PodRun,
    container_argv,
    image_repository,
    local_address,
    readiness_url,
    scrape_target,
)

IMAGES = {"ghcr.io/modelpilot/modelpilot": ["modelpilot-bin"], "example/model": ["python", "m.py"]}


def test_image_repository_drops_tag_and_digest_but_not_registry_port() -> None:
    assert (
        image_repository("ghcr.io/modelpilot/modelpilot:0.1.0") == "ghcr.io/modelpilot/modelpilot"
    )
    assert image_repository("example/model@sha256:abc") == "example/model"
    assert image_repository("localhost:5000/model") == "localhost:5000/model"


def test_arguments_move_to_the_pods_own_address() -> None:
    meter = {
        "image": "ghcr.io/modelpilot/modelpilot:0.1.0",
        "args": ["meter", "--listen=0.0.0.0:8099", "--upstream=http://127.0.0.1:8000"],
    }
    assert container_argv(meter, IMAGES, "127.0.1.7") == [
        "modelpilot-bin",
        "meter",
        "--listen=127.0.1.7:8099",
        "--upstream=http://127.0.1.7:8000",
    ]


def test_command_overrides_the_entrypoint_and_python_is_this_interpreter() -> None:
    container = {"image": "example/model:1", "command": ["python", "other.py"], "args": [8000]}
    assert container_argv(container, IMAGES, "127.0.1.2") == [sys.executable, "other.py", "8000"]


def test_an_image_without_a_local_command_is_not_run() -> None:
    assert container_argv({"image": "vllm/vllm-openai:v0.6.3"}, IMAGES, "127.0.1.2") is None
    run = ContainerRun({"name": "model", "image": "vllm/vllm-openai:v0.6.3"}, None, Path("x.log"))
    assert run.status()["state"]["waiting"]["reason"] == "ErrImagePull"
    assert run.status()["ready"] is False


def test_readiness_probe_ports_by_number_or_name() -> None:
    container = {
        "ports": [{"name": "meter-metrics", "containerPort": 9099}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "meter-metrics"}},
    }
    assert readiness_url(container, "127.0.1.3") == "http://127.0.1.3:9099/readyz"
    by_number = {"readinessProbe": {"httpGet": {"path": "/health", "port": 8000}}}
    assert readiness_url(by_number, "127.0.1.3") == "http://127.0.1.3:8000/health"
    assert readiness_url({}, "127.0.1.3") is None


def test_only_pods_that_ask_are_scraped() -> None:
    asks = {
        "metadata": {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9099"}}
    }
    assert scrape_target(asks, "127.0.1.4") == "127.0.1.4:9099"
    assert scrape_target({"metadata": {}}, "127.0.1.4") is None


def test_pod_ips_are_valid_for_endpoints_and_map_back_to_loopback(tmp_path: Path) -> None:
    run = PodRun("ns", "p", "uid", "127.0.1.9", tmp_path, [], "2026-01-01T00:00:00Z", None)
    status = run.status()
    assert status["podIP"] == "10.244.0.9"
    assert local_address(status["podIP"]) == "127.0.1.9"
    # No containers is trivially ready; transitions keep their time while unchanged.
    first = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
    assert {c["type"]: c["lastTransitionTime"] for c in run.status()["conditions"]} == first
