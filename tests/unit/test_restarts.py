from modelpilot.api.status import Restarts
from modelpilot.observer.pods import ContainerInfo, PodInfo
from modelpilot.observer.restarts import (
    LIVENESS_REASON,
    account,
    find_new_restarts,
    relabel_liveness,
)


def pod(name: str, uid: str, *containers: ContainerInfo) -> PodInfo:
    return PodInfo(name=name, uid=uid, containers=containers)


def observe(
    previous: Restarts, pods: list[PodInfo], killed: frozenset[tuple[str, str]] = frozenset()
) -> Restarts:
    new = relabel_liveness(find_new_restarts(previous, pods), killed)
    return account(previous, pods, new)


def test_counts_by_reason_and_remembers_last() -> None:
    pods = [
        pod(
            "a",
            "ua",
            ContainerInfo(
                name="model",
                restart_count=2,
                last_reason="OOMKilled",
                last_exit_code=137,
                last_finished_at="2026-01-01T00:00:05Z",
            ),
        ),
        pod(
            "b",
            "ub",
            ContainerInfo(
                name="model",
                restart_count=1,
                last_reason="Error",
                last_exit_code=1,
                last_finished_at="2026-01-01T00:00:09Z",
            ),
        ),
    ]
    status = observe(Restarts(), pods)
    assert status.total == 3
    assert {r.reason: r.count for r in status.by_reason} == {"OOMKilled": 2, "Error": 1}
    assert status.last is not None
    assert (status.last.pod, status.last.reason, status.last.exit_code) == ("b", "Error", 1)


def test_same_observation_twice_adds_nothing() -> None:
    pods = [pod("a", "ua", ContainerInfo(name="model", restart_count=2, last_reason="Error"))]
    once = observe(Restarts(), pods)
    assert observe(once, pods) == once


def test_total_survives_pod_replacement() -> None:
    crashing = [pod("a", "ua", ContainerInfo(name="model", restart_count=5, last_reason="Error"))]
    before = observe(Restarts(), crashing)
    replaced = [pod("a2", "ua2", ContainerInfo(name="model", restart_count=0))]
    after = observe(before, replaced)
    assert after.total == 5
    assert [c.uid for c in after.containers] == ["ua2"]
    again = observe(
        after,
        [pod("a2", "ua2", ContainerInfo(name="model", restart_count=1, last_reason="OOMKilled"))],
    )
    assert again.total == 6
    assert {r.reason: r.count for r in again.by_reason} == {"Error": 5, "OOMKilled": 1}


def test_liveness_kill_is_named_from_the_kubelet_event() -> None:
    pods = [
        pod(
            "a",
            "ua",
            ContainerInfo(name="model", restart_count=1, last_reason="Error", last_exit_code=137),
            ContainerInfo(name="meter", restart_count=1, last_reason="Error"),
        )
    ]
    status = observe(Restarts(), pods, killed=frozenset({("ua", "model")}))
    assert {r.reason: r.count for r in status.by_reason} == {LIVENESS_REASON: 1, "Error": 1}


def test_oom_is_not_relabelled_as_liveness() -> None:
    pods = [pod("a", "ua", ContainerInfo(name="model", restart_count=1, last_reason="OOMKilled"))]
    status = observe(Restarts(), pods, killed=frozenset({("ua", "model")}))
    assert [r.reason for r in status.by_reason] == ["OOMKilled"]


def test_missing_reason_is_unknown_not_dropped() -> None:
    status = observe(Restarts(), [pod("a", "ua", ContainerInfo(name="m", restart_count=2))])
    assert {r.reason: r.count for r in status.by_reason} == {"Unknown": 2}
