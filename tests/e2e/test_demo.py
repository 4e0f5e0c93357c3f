"""`make demo`, shortened: its own control plane and real node, ModelPilot installed from
manifests/, the sample model and traffic through its Service; it must end by itself having
shown a recommendation with its evidence, a change applied in Auto mode and a model woken
from zero. (It runs before the tier's own node starts: one node at a time on a machine.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelpilot.devcluster import controlplane, node
from modelpilot.devcluster.kubectl import kubectl


@pytest.mark.timeout(600)
def test_a_short_demo_shows_a_recommendation_and_an_applied_change(tmp_path: Path) -> None:
    try:
        node.preflight()
    except node.NodeUnsupportedError as exc:
        pytest.skip(f"no real node on this machine: {exc}")
    state_dir = tmp_path / "demo"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelpilot.demo",
                "--minutes=4",
                "--lines",
                "--keep-cluster",
                f"--state-dir={state_dir}",
            ],
            capture_output=True,
            text=True,
            timeout=540,
        )
        out = result.stdout
        print(out)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "the advisor recommends:" in out
        assert "evidence: " in out
        assert "Auto mode applied scaleDownDelaySeconds" in out
        assert "p95 latency (clients)" in out
        assert "scaled 1 -> " in out  # the scaler acted on the meters' concurrency
        # Scale to zero: a burst through the activator wakes the second model, then it idles
        # back to zero.
        assert "== Scale to zero: sample-chat-zero (minReplicas 0) has 0 replicas" in out
        assert "the scaler asks for " in out and "(0 -> " in out
        assert "12/12 answered 200" in out
        assert "scaled 1 -> 0: no replica, no GPU" in out

        got = kubectl(
            state_dir / "kubeconfig", "get", "md", "sample-chat", "-n", "demo", "-o", "json"
        )
        md = json.loads(got)
        status = md["status"]
        applied = [c for c in status["advisor"]["history"] if not c.get("reverted")]
        assert applied, status["advisor"]
        assert applied[0]["setting"] == "scaleDownDelaySeconds"
        assert applied[0]["from"] == 10 and applied[0]["to"] > 10
        # The spec stays the user's intent; the effective value is the advisor's.
        assert md["spec"]["advisor"]["mode"] == "Auto"
        assert md["spec"]["autoscaling"]["scaleDownDelaySeconds"] == 10
        assert status["autoscaling"]["effective"]["scaleDownDelaySeconds"] == applied[-1]["to"]
        assert status["restarts"]["total"] == 0
        # The replay's self-check on this run's own history, with the settings as Auto mode
        # changed them (README: What if; tests/data/demo-history.json is one such history).
        whatif = [
            sys.executable,
            "-m",
            "modelpilot",
            "whatif",
            "sample-chat",
            "-n",
            "demo",
            f"--prometheus-url={(state_dir / 'prometheus-url').read_text().strip()}",
            "--lookback=8m",
            "--step=3",
            "--scrape-interval=2s",
        ]
        env = {**os.environ, "KUBECONFIG": str(state_dir / "kubeconfig")}
        table = subprocess.run(whatif, capture_output=True, text=True, timeout=120, env=env)
        print(table.stdout)
        assert table.returncode == 0, table.stderr
        got = subprocess.run(
            [*whatif, "-o", "json"], capture_output=True, text=True, timeout=120, env=env
        )
        check = json.loads(got.stdout)["self_check"]
        assert check["column"] == "as it ran"
        # Replica-hours hold (+4% on the recorded history). Its p95 (-8% there) rests on the
        # backlog the first burst leaves on one cold replica; it is printed, not yet asserted
        # on live runs (README: What if).
        assert abs(check["replica_hours"]) <= 0.25, check
        logs = state_dir / "logs"
        assert (logs / "operator.log").exists() and any((logs / "pods").iterdir())
        assert "Traceback" not in (logs / "operator.log").read_text()
    finally:
        controlplane.down(state_dir)
