from modelpilot.observer.pods import PodInfo


def test_pod_facts_from_a_kubelet_status() -> None:
    body = {
        "metadata": {
            "name": "p",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "deletionTimestamp": "2026-01-01T00:10:00Z",
        },
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:05:00Z"},
            ],
            "containerStatuses": [
                {
                    "name": "model",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "reason": "OOMKilled",
                            "exitCode": 137,
                            "finishedAt": "2026-01-01T00:04:00Z",
                        }
                    },
                }
            ],
        },
    }
    pod = PodInfo.from_body(body)
    assert (pod.ready, pod.ready_since, pod.terminating) == ("False", "2026-01-01T00:05:00Z", True)
    (model,) = pod.containers
    assert (model.restart_count, model.last_reason, model.last_exit_code, model.waiting_reason) == (
        3,
        "OOMKilled",
        137,
        "CrashLoopBackOff",
    )


def test_pod_without_status_yet() -> None:
    pod = PodInfo.from_body({"metadata": {"name": "p", "uid": "u"}})
    assert (pod.ready, pod.containers, pod.terminating) == (None, (), False)
