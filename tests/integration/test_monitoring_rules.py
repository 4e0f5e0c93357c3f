"""The PrometheusRule in manifests/monitoring: valid for promtool, and each alert fires on
a history with its symptom and stays silent on a healthy one (`promtool test rules`)."""

import subprocess
from pathlib import Path
from typing import Any

import yaml

from modelpilot.devcluster.binaries import find_binary

RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheusrule.yaml"
M = 'namespace="ns",model_deployment="m"'


def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))
    return path


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    result = subprocess.run(
        [find_binary("promtool"), "check", "rules", str(rule_file(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 32 rules found" in result.stdout


def annotations(alert: str) -> dict[str, str]:
    """The alert's annotations as rendered for model ns/m."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    return {
        k: v.replace("{{ $labels.namespace }}", "ns").replace("{{ $labels.model_deployment }}", "m")
        for k, v in rule["annotations"].items()
    }


def case(
    alert: str, at: str, series: list[dict[str, str]], fires: bool, **labels: str
) -> dict[str, Any]:
    expected = (
        [
            {
                "exp_labels": {
                    "severity": "warning",
                    "namespace": "ns",
                    "model_deployment": "m",
                    **labels,
                },
                "exp_annotations": annotations(alert),
            }
        ]
        if fires
        else []
    )
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
    }


def histogram(tail: bool) -> list[dict[str, str]]:
    """Requests per minute by bucket: all fast, or a slow tail past twice the median."""
    buckets = {"0.1": 80, "1": 90, "+Inf": 100} if tail else {"0.1": 100, "1": 100, "+Inf": 100}
    return [
        {
            "series": f'modelpilot_end_to_end_response_time_seconds_bucket{{{M},le="{le}"}}',
            "values": f"0+{n}x40",
        }
        for le, n in buckets.items()
    ]


def test_each_alert_fires_on_its_symptom_only(tmp_path: Path) -> None:
    flapping = " ".join("1" if i % 2 else "2" for i in range(90))
    replicas = f'modelpilot_replicas{{{M},state="active"}}'
    at_max = [
        {"series": replicas, "values": "4x40"},
        {
            "series": f'modelpilot_autoscaling_setting{{{M},setting="maxReplicas"}}',
            "values": "4x40",
        },
    ]
    cases = [
        case("ModelPilotReplicaThrash", "80m", [{"series": replicas, "values": flapping}], True),
        case("ModelPilotReplicaThrash", "80m", [{"series": replicas, "values": "2x90"}], False),
        case("ModelPilotCapacityExhausted", "35m", at_max + histogram(tail=True), True),
        case("ModelPilotCapacityExhausted", "35m", at_max + histogram(tail=False), False),
        case(
            "ModelPilotReplicasStarting",
            "20m",
            [{"series": f'modelpilot_replicas{{{M},state="starting"}}', "values": "1x25"}],
            True,
        ),
        case(
            "ModelPilotReplicasStarting",
            "20m",
            [{"series": f'modelpilot_replicas{{{M},state="starting"}}', "values": "1x5 0x20"}],
            False,
        ),
        case(
            "ModelPilotAsyncBacklog",
            "35m",
            [{"series": f'modelpilot_async_queue_size{{{M},pod="m-0"}}', "values": "0+1x40"}],
            True,
        ),
        case(
            "ModelPilotAsyncBacklog",
            "35m",
            [{"series": f'modelpilot_async_queue_size{{{M},pod="m-0"}}', "values": "12x40"}],
            False,
        ),
        case(
            "ModelPilotPodsNotReady",
            "20m",
            [{"series": f'modelpilot_pod_readiness{{{M},condition="false"}}', "values": "1x25"}],
            True,
            condition="false",
        ),
        case(
            "ModelPilotPodsNotReady",
            "20m",
            [{"series": f'modelpilot_pod_readiness{{{M},condition="false"}}', "values": "0x25"}],
            False,
        ),
    ]
    oom = f'modelpilot_container_restarts_total{{{M},reason="OOMKilled"}}'
    cases.append(
        case(
            "ModelPilotOOMKilled",
            "5m",
            [{"series": oom, "values": "0 0 0 1 1 1"}],
            True,
            reason="OOMKilled",
        )
    )
    cases.append(case("ModelPilotOOMKilled", "5m", [{"series": oom, "values": "3x5"}], False))

    rules = rule_file(tmp_path)
    tests = tmp_path / "alerts_test.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": cases})
    )
    result = subprocess.run(
        [find_binary("promtool"), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
