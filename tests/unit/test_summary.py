from datetime import UTC, datetime, timedelta

from modelpilot.api.status import Condition, LastRestart, ReplicaCounts, Restarts
from modelpilot.observer.pods import PodInfo
from modelpilot.observer.summary import (
    Thresholds,
    Trouble,
    conditions,
    count_readiness,
    count_replicas,
    find_trouble,
)
from modelpilot.times import format_time

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = Thresholds()


def ago(seconds: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds))


MIXED = [
    PodInfo(name="ready", uid="1", ready="True"),
    PodInfo(name="not-ready", uid="2", ready="False"),
    PodInfo(name="unknown", uid="3", ready="Unknown"),
    PodInfo(name="no-condition", uid="4"),
    PodInfo(name="leaving", uid="5", ready="False", deleting_since=ago(10)),
]


def test_replica_states() -> None:
    assert count_replicas(MIXED, desired=4) == ReplicaCounts(
        desired=4, starting=3, active=1, terminating=1
    )


def test_readiness_bands() -> None:
    counts = count_readiness(MIXED)
    assert (counts.ready, counts.not_ready, counts.unknown) == (1, 2, 2)


def test_trouble_needs_time() -> None:
    pods = [
        PodInfo(name="served-then-failing", uid="a", ready="False", ready_since=ago(400)),
        PodInfo(name="served-briefly-down", uid="b", ready="False", ready_since=ago(30)),
        PodInfo(name="loading-long", uid="c", ready="False", created=ago(1300)),
        PodInfo(name="loading", uid="d", ready="False", created=ago(600)),
        PodInfo(name="stuck-leaving", uid="e", deleting_since=ago(301)),
    ]
    trouble = find_trouble(pods, served={"a", "b"}, now=NOW, limits=LIMITS)
    assert [p.name for p in trouble.not_ready] == ["served-then-failing"]
    assert [p.name for p in trouble.stuck_starting] == ["loading-long"]
    assert [p.name for p in trouble.slow_terminating] == ["stuck-leaving"]


def _conditions(**kwargs: object) -> dict[str, Condition]:
    args: dict[str, object] = dict(
        problems=[],
        has_deployment=True,
        replicas=ReplicaCounts(desired=2, active=2),
        restarts=Restarts(),
        trouble=Trouble(),
        previous=[],
        now=NOW,
        generation=3,
        limits=LIMITS,
    )
    args.update(kwargs)
    return {c.type: c for c in conditions(**args)}  # type: ignore[arg-type]


def test_healthy() -> None:
    c = _conditions()
    assert (c["Ready"].status, c["Ready"].reason) == ("True", "Serving")
    assert c["Ready"].message == "2 of 2 replicas active"
    assert (c["Progressing"].status, c["Degraded"].status) == ("False", "False")
    assert all(x.observed_generation == 3 for x in c.values())


def test_invalid_spec_wins_and_carries_the_problems() -> None:
    c = _conditions(problems=["spec.port 1 is not a containerPort"])
    assert (c["Ready"].status, c["Ready"].reason) == ("False", "InvalidSpec")
    assert c["Ready"].message == "spec.port 1 is not a containerPort"


def test_starting_replicas() -> None:
    c = _conditions(replicas=ReplicaCounts(desired=3, active=0, starting=3))
    assert (c["Ready"].reason, c["Progressing"].reason) == ("NoActiveReplicas", "ReplicasStarting")
    assert c["Progressing"].message == "3 replicas starting, 0 active"


def test_recent_restart_degrades_then_expires() -> None:
    last = LastRestart(pod="p", container="model", reason="OOMKilled", exit_code=137, time=ago(60))
    c = _conditions(restarts=Restarts(total=4, last=last))
    assert (c["Degraded"].status, c["Degraded"].reason) == ("True", "ContainerRestarts")
    assert c["Degraded"].message == (
        "container model in pod p restarted 60s ago (OOMKilled, exit code 137); 4 restarts in total"
    )
    old = last.model_copy(update={"time": ago(LIMITS.restart_window_seconds + 1)})
    assert _conditions(restarts=Restarts(total=4, last=old))["Degraded"].status == "False"


def test_transition_time_kept_while_status_holds() -> None:
    earlier = Condition(
        type="Ready",
        status="True",
        reason="Serving",
        message="old",
        last_transition_time="2026-01-01T00:00:00Z",
    )
    c = _conditions(previous=[earlier])
    assert c["Ready"].last_transition_time == "2026-01-01T00:00:00Z"
    flipped = _conditions(previous=[earlier], replicas=ReplicaCounts(desired=1, starting=1))
    assert flipped["Ready"].last_transition_time == format_time(NOW)


def test_not_ready_pods_degrade_with_names() -> None:
    pods = [
        PodInfo(name=f"p{i}", uid=str(i), ready="False", ready_since=ago(600)) for i in range(5)
    ]
    trouble = find_trouble(pods, served={str(i) for i in range(5)}, now=NOW, limits=LIMITS)
    c = _conditions(trouble=trouble, replicas=ReplicaCounts(desired=5, starting=5))
    assert c["Degraded"].reason == "PodsNotReady"
    assert "p0, p1, p2 and 2 more" in c["Degraded"].message
