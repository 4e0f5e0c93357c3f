"""One judge: the operator (through its status), `modelpilot advise` and `modelpilot report`
reach the same verdict for the same history and status. The history is backfilled into a
real Prometheus and ends ten minutes ago, so every evaluation in this test reads the same
points whatever minute it runs in; the status is the API server's."""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import catalogue, series, simulate
from modelpilot.devcluster.servers import OperatorProcess
from modelpilot.times import format_time

from .conftest import DEDICATED_SHARD, SHARD_LABEL
from .operator_helpers import Models, eventually, model_spec

pytestmark = pytest.mark.usefixtures("operator")  # the session operator must ignore them
THRASH = next(s for s in catalogue() if s.name == "thrash")
SHARD = {SHARD_LABEL: DEDICATED_SHARD}


@pytest.fixture
def judged(
    namespace: str, kubeconfigs: tuple[Path, Path], admin_api: client.ApiClient, tmp_path: Path
) -> Iterator[tuple[Models, PrometheusServer]]:
    """Two models with the same thrashing history: `fresh`, and `changed`, whose status
    holds an Auto change made five minutes ago; an operator for them, in Recommend mode."""
    end = time.time() - 600
    history = [
        s
        for name in ("fresh", "changed")
        for s in series(simulate(THRASH, 5 * 3600), end - 5 * 3600, namespace, name)
    ]
    prometheus = PrometheusServer(tmp_path / "prometheus")
    backfill(to_openmetrics(history), prometheus.data_dir)
    prometheus.start()
    models = Models(admin_api, namespace)
    for name in ("fresh", "changed"):
        models.create(name, model_spec(autoscaling=THRASH.settings.wire()), labels=SHARD)
    change = {
        "time": format_time(datetime.now(UTC) - timedelta(minutes=5)),
        "setting": "scaleDownDelaySeconds",
        "from": 300,
        "to": 600,
        "reason": "Thrash",
        "message": "applied scaleDownDelaySeconds 300 -> 600 (Thrash)",
    }
    models.patch_status(
        "changed", {"advisor": {"overrides": {"scaleDownDelaySeconds": 600}, "history": [change]}}
    )
    operator = OperatorProcess(
        tmp_path / "operator.log",
        kubeconfigs[1],
        namespace=namespace,
        selector=f"{SHARD_LABEL}={DEDICATED_SHARD}",
        prometheus_url=prometheus.url,
        advisor_interval=2,
        scaler_interval=2,
        resync_seconds=1,
    )
    yield models, prometheus
    operator.stop()
    prometheus.stop()
    log_text = (tmp_path / "operator.log").read_text()
    assert "Traceback" not in log_text and "Forbidden" not in log_text, log_text[-3000:]


def _modelpilot(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelpilot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _from_report(page: str) -> list[tuple[str, str, int]]:
    found = re.findall(r'data-setting="(\w+)" data-reason="(\w+)" data-recommended="(\d+)"', page)
    return sorted((s, r, int(v)) for s, r, v in found)


def _brief(recs: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((r["setting"], r["reason"], r["recommended"]) for r in recs)


def test_operator_advise_and_report_agree(
    judged: tuple[Models, PrometheusServer], kubeconfigs: tuple[Path, Path], tmp_path: Path
) -> None:
    models, prometheus = judged
    admin = kubeconfigs[0]

    def evaluated() -> dict[str, dict[str, Any]]:
        return {name: models.status(name)["advisor"] for name in ("fresh", "changed")}

    operator = eventually(evaluated, timeout=60)
    advised = json.loads(
        _modelpilot(
            admin,
            "advise",
            "-n",
            models.namespace,
            "--prometheus-url",
            prometheus.url,
            "-o",
            "json",
        )
    )
    by_name = {item["name"]: item for item in advised["items"]}

    # The operator recommends for the model whose history is all under its settings (the
    # thrash it shows, as its own recommendation or covered by a cheaper one)...
    fresh = operator["fresh"]["recommendations"]
    assert "Thrash" in {r["reason"] for r in fresh} | {
        reason for r in fresh for reason in str(r["evidence"].get("covers", "")).split(", ")
    }
    # ...and holds back where the last change is still being judged.
    assert operator["changed"]["recommendations"] == []
    assert "judging the last change" in models.condition("changed", "MetricsAvailable")["message"]

    for name in ("fresh", "changed"):
        # advise: the very same recommendations, evidence and confidence included.
        assert by_name[name]["status"] == "ok"
        assert by_name[name]["recommendations"] == operator[name]["recommendations"], name
        # report: the same settings, reasons and values on the page.
        out = tmp_path / f"{name}.html"
        _modelpilot(
            admin, "report", name, "-n", models.namespace, "--prometheus-url", prometheus.url,
            "-o", str(out),
        )  # fmt: skip
        page = out.read_text()
        assert _from_report(page) == _brief(operator[name]["recommendations"]), name
    assert "judging the last change" in (tmp_path / "changed.html").read_text()
