"""Objectives in LLM terms and the engine's own signals, judged through the `advise` path
(manifests in, one batched fetch, the judge) against a real Prometheus holding six hours of
streamed LLM traffic: a time-to-first-token histogram beside an end-to-end one that includes
~8 s of generation, and vLLM's KV-cache and waiting-request gauges."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect

from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import Streaming, catalogue, series, simulate
from modelpilot.oneshot import Judged, judge_models

NAMESPACE = "llm"
SIX_HOURS = 6 * 3600
SCENARIOS = {s.name: s for s in catalogue()}
STREAMED = {"llm-healthy": "healthy", "llm-target-too-high": "target-too-high"}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusConnect]:
    workdir = tmp_path_factory.mktemp("advisor-llm") / "prometheus"
    start = time.time() - 30 - SIX_HOURS
    text = to_openmetrics(
        s
        for name, scenario in STREAMED.items()
        for s in series(
            simulate(SCENARIOS[scenario], SIX_HOURS), start, NAMESPACE, name, streaming=Streaming()
        )
    )
    server = PrometheusServer(workdir)
    backfill(text, server.data_dir)
    server.start()
    yield PrometheusConnect(url=server.url, disable_ssl=True)
    server.stop()


def manifest(name: str, objective: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelpilot.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "port": 8000,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "model", "image": "m:1", "ports": [{"containerPort": 8000}]}
                    ]
                }
            },
            "autoscaling": SCENARIOS[STREAMED[name]].settings.wire(),
            "advisor": {"latencyObjective": objective},
        },
    }


def verdict(prometheus: PrometheusConnect, name: str, objective: dict[str, Any]) -> Judged:
    [judged] = judge_models([manifest(name, objective)], prometheus, SIX_HOURS, 60)
    return judged


def test_a_ttft_objective_is_judged_on_the_ttft_series(prometheus: PrometheusConnect) -> None:
    ttft = {"metric": "TimeToFirstToken", "milliseconds": 1000}
    healthy = verdict(prometheus, "llm-healthy", ttft)
    assert healthy.verdict.evaluation.status == "ok"
    assert healthy.verdict.evaluation.recommendations == []
    assert healthy.history is not None
    assert max(v for v in healthy.history.latency if v is not None) < 1.0  # TTFT, not e2e
    # The same traffic against an end-to-end objective of 1 s: every streamed request
    # (8 s of generation) misses it.
    e2e = verdict(prometheus, "llm-healthy", {"milliseconds": 1000})
    assert e2e.history is not None
    assert min(v for v in e2e.history.latency if v is not None) > 8.0


def test_kv_cache_saturation_is_evidence(prometheus: PrometheusConnect) -> None:
    objective = {"metric": "TimeToFirstToken", "percentile": 95, "milliseconds": 1000}
    judged = verdict(prometheus, "llm-target-too-high", objective)
    found = {r.reason: r for r in judged.verdict.evaluation.recommendations}
    assert "ConcurrencyTargetTooHigh" in found, judged.verdict.evaluation
    evidence = found["ConcurrencyTargetTooHigh"].evidence
    assert evidence["kvCacheUsageP95"] == 1.0
    assert isinstance(evidence["engineQueueP95"], float) and evidence["engineQueueP95"] > 0
    assert isinstance(evidence["engineSaturatedShare"], float)
    assert evidence["engineSaturatedShare"] >= 0.5
    assert "The engine itself was saturated" in found["ConcurrencyTargetTooHigh"].message
    # A model without engine series gets no such evidence (absent changes nothing).
    healthy = verdict(prometheus, "llm-healthy", objective)
    assert healthy.history is not None
    assert max(v for v in healthy.history.kv_cache if v is not None) < 0.5


def test_an_objective_on_a_series_that_is_not_there_is_unknown(
    prometheus: PrometheusConnect,
) -> None:
    judged = verdict(
        prometheus, "llm-healthy", {"metric": "TimePerOutputToken", "milliseconds": 50}
    )
    evaluation = judged.verdict.evaluation
    assert evaluation.status == "insufficient-data"
    assert evaluation.missing == ["time per output token (streamed OpenAI-compatible requests)"]
