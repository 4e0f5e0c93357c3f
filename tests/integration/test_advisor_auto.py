"""Auto mode on the local control plane: a dedicated operator (its own shard of models)
reads six backfilled hours of a scenario and applies, holds or reverts changes."""

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client

from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import catalogue, series, simulate
from modelpilot.devcluster.servers import OperatorProcess
from modelpilot.times import format_time

from .conftest import DEDICATED_SHARD, SHARD_LABEL
from .operator_helpers import Models, equal, eventually, model_spec

pytestmark = pytest.mark.usefixtures("operator")  # the session operator must ignore them
SCENARIOS = {s.name: s for s in catalogue()}


@pytest.fixture
def auto_operator(
    namespace: str, kubeconfigs: tuple[Path, Path], admin_api: client.ApiClient, tmp_path: Path
) -> Iterator[Models]:
    """Backfill the thrash and capacity scenarios as this namespace's models, then run an
    operator for the dedicated shard against that Prometheus."""
    end = time.time() - 30
    history = [
        s
        for name in ("thrash", "capacity")
        for s in series(simulate(SCENARIOS[name], 6 * 3600), end - 6 * 3600, namespace, name)
    ]
    prometheus = PrometheusServer(tmp_path / "prometheus")
    backfill(to_openmetrics(history), prometheus.data_dir)
    prometheus.start()
    models = Models(admin_api, namespace)
    started: list[OperatorProcess] = []

    def start() -> None:
        started.append(
            OperatorProcess(
                tmp_path / "auto-operator.log",
                kubeconfigs[1],
                namespace=namespace,
                selector=f"{SHARD_LABEL}={DEDICATED_SHARD}",
                prometheus_url=prometheus.url,
                advisor_interval=2,
                scaler_interval=2,
                resync_seconds=1,
            )
        )

    models.start = start  # type: ignore[attr-defined]
    yield models
    for process in started:
        process.stop()
    prometheus.stop()
    log_text = (tmp_path / "auto-operator.log").read_text()
    assert "Traceback" not in log_text and "Forbidden" not in log_text, log_text[-3000:]


def create(models: Models, name: str, **spec: object) -> None:
    models.create(name, model_spec(**spec), labels={SHARD_LABEL: DEDICATED_SHARD})


def test_auto_mode_applies_holds_and_reverts(
    auto_operator: Models, admin_api: client.ApiClient
) -> None:
    models = auto_operator
    thrash = SCENARIOS["thrash"].settings.wire()
    create(
        models,
        "thrash",
        autoscaling=thrash,
        advisor={
            "mode": "Auto",
            "cooldownSeconds": 3600,
            # Every other setting pinned: the change is chosen among the delays up to 1200.
            "limits": {
                "scaleDownDelaySeconds": {"max": 1200},
                "minReplicas": {"max": 1},
                "maxReplicas": {"max": 8},
                "concurrencyTarget": {"min": 2, "max": 2},
                "targetUtilizationPercentage": {"min": 70, "max": 70},
                "autoscalingWindowSeconds": {"min": 60, "max": 60},
            },
        },
    )
    create(models, "nodata", autoscaling=thrash, advisor={"mode": "Auto"})
    create(
        models,
        "capacity",
        autoscaling=SCENARIOS["capacity"].settings.wire(),
        advisor={"mode": "Auto"},
    )
    # An earlier Auto change to capacity's maxReplicas, judged by a latency it never met.
    earlier = format_time(datetime.now(UTC) - timedelta(minutes=30))
    models.patch_status(
        "capacity",
        {
            "advisor": {
                "overrides": {"maxReplicas": 3},
                "history": [
                    {
                        "time": earlier,
                        "setting": "maxReplicas",
                        "from": 2,
                        "to": 3,
                        "reason": "CapacityExhausted",
                        "message": "applied",
                        "latencyBeforeSeconds": 0.05,
                    }
                ],
            }
        },
    )
    models.start()  # type: ignore[attr-defined]

    def applied() -> dict[str, object]:
        advisor = models.status("thrash")["advisor"]
        # One bounded step (300 -> at most double), inside the limit of 1200.
        assert 300 < advisor["overrides"]["scaleDownDelaySeconds"] <= 600
        return advisor

    advisor = eventually(applied, timeout=60)
    (change,) = [c for c in advisor["history"] if c["setting"] == "scaleDownDelaySeconds"]
    assert (change["from"], change["reason"]) == (300, "Thrash")
    step = change["to"]
    # Where it is heading, one step at a time (or there in one, with its prediction kept).
    heading = re.search(r"recommended (\d+), one step at a time", change["message"])
    if step == 600:
        assert heading is not None and 600 < int(heading.group(1)) <= 1200
    else:
        assert heading is None and change["predicted"]["recommended"]["withinObjective"] > 0
    eventually(
        lambda: equal(
            models.status("thrash")["autoscaling"]["effective"]["scaleDownDelaySeconds"], step
        )
    )
    assert models.get("thrash")["spec"]["autoscaling"]["scaleDownDelaySeconds"] == 300

    # Cooldown: more evaluations (every 2 s), no second change.
    first = models.status("thrash")["advisor"]["lastEvaluationTime"]
    assert wait_until(lambda: models.status("thrash")["advisor"]["lastEvaluationTime"] != first, 20)
    applied_before = len(models.status("thrash")["advisor"]["history"])
    time.sleep(4)
    assert len(models.status("thrash")["advisor"]["history"]) == applied_before
    # The thrash it saw happened under the old setting: only history after the change is
    # judged, so the same evidence does not drive a second step once the cooldown ends.
    condition = models.condition("thrash", "MetricsAvailable")
    assert "judging the last change" in condition["message"]
    assert models.status("thrash")["advisor"]["recommendations"] == []

    # Missing data: nothing applied, and it says why.
    def held() -> None:
        condition = models.condition("nodata", "MetricsAvailable")
        assert (condition["status"], condition["reason"]) == ("False", "InsufficientData")

    eventually(held)
    assert "overrides" not in models.status("nodata").get("advisor", {})

    # The earlier change made latency worse than before it: reverted, and said so.
    def reverted() -> dict[str, object]:
        advisor = models.status("capacity")["advisor"]
        assert advisor["overrides"] == {"maxReplicas": 2}
        return advisor

    advisor = eventually(reverted, timeout=30)
    undo = advisor["history"][-1]
    assert (undo["from"], undo["to"], undo["reason"], undo["reverted"]) == (3, 2, "Reverted", True)
    assert "latency went from 50 ms to" in undo["message"]
    events = {
        e.reason for e in client.CoreV1Api(admin_api).list_namespaced_event(models.namespace).items
    }
    assert {"RecommendationApplied", "RecommendationReverted", "RecommendationAdded"} <= events
