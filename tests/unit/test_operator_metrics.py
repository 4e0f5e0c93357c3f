from prometheus_client import CollectorRegistry, generate_latest

from modelpilot.controller.metrics import StatusCollector


def test_series_follow_the_written_status() -> None:
    statuses = {
        ("ns", "chat"): {
            "replicas": {"desired": 3, "starting": 1, "active": 2, "terminating": 0},
            "pods": {"ready": 2, "notReady": 1, "unknown": 0},
            "restarts": {"byReason": [{"reason": "OOMKilled", "count": 4}]},
            "autoscaling": {"effective": {"maxReplicas": 5}, "desiredReplicas": 4},
            "advisor": {"recommendations": [{"setting": "maxReplicas", "recommended": 8}]},
        }
    }
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: statuses))
    text = generate_latest(registry).decode()
    labels = 'model_deployment="chat",namespace="ns"'
    assert f'modelpilot_replicas{{{labels},state="active"}} 2.0' in text
    assert f"modelpilot_desired_replicas{{{labels}}} 4.0" in text  # the scaler's figure
    assert f'modelpilot_pod_readiness{{condition="false",{labels}}} 1.0' in text
    assert f'modelpilot_container_restarts_total{{{labels},reason="OOMKilled"}} 4.0' in text
    assert f'modelpilot_autoscaling_setting{{{labels},setting="maxReplicas"}} 5.0' in text
    assert f'modelpilot_recommended_value{{{labels},setting="maxReplicas"}} 8.0' in text

    statuses.clear()  # a deleted model's series go away
    assert "chat" not in generate_latest(registry).decode()
