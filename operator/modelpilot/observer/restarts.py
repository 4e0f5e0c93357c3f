"""Running restart accounting: the total never goes down when a crashing pod is replaced.

The kubelet's restartCount belongs to one pod; it vanishes with the pod. So status keeps
the count last seen per (pod UID, container) and adds only increases to the running
total, attributing each to the reason the previous run ended.
"""

from collections import Counter
from collections.abc import Collection, Iterable

from pydantic import BaseModel

from modelpilot.api.status import ContainerRestartCount, LastRestart, ReasonCount, Restarts
from modelpilot.observer.pods import PodInfo

LIVENESS_REASON = "LivenessProbeFailed"


class NewRestart(BaseModel):
    """Restarts found since the last observation, for one container."""

    pod: str
    uid: str
    container: str
    count: int
    reason: str
    exit_code: int | None = None
    time: str | None = None


def find_new_restarts(previous: Restarts, pods: Iterable[PodInfo]) -> list[NewRestart]:
    """Containers whose restartCount rose since `previous`; reason as the kubelet reported."""
    seen = {(c.uid, c.container): c.restart_count for c in previous.containers}
    found = []
    for pod in pods:
        for c in pod.containers:
            delta = c.restart_count - seen.get((pod.uid, c.name), 0)
            if delta > 0:
                found.append(
                    NewRestart(
                        pod=pod.name,
                        uid=pod.uid,
                        container=c.name,
                        count=delta,
                        reason=c.last_reason or "Unknown",
                        exit_code=c.last_exit_code,
                        time=c.last_finished_at,
                    )
                )
    return found


def relabel_liveness(
    restarts: list[NewRestart], liveness_killed: Collection[tuple[str, str]]
) -> list[NewRestart]:
    """The kubelet reports a liveness kill as an ordinary exit (Error, 137); its Killing
    event says why. `liveness_killed` holds the (pod UID, container) pairs it named."""
    return [
        r.model_copy(update={"reason": LIVENESS_REASON})
        if (r.uid, r.container) in liveness_killed and r.reason != "OOMKilled"
        else r
        for r in restarts
    ]


def account(previous: Restarts, pods: Iterable[PodInfo], new: list[NewRestart]) -> Restarts:
    """The next running restart status, given the restarts found in this observation."""
    pods = list(pods)
    by_reason = Counter({r.reason: r.count for r in previous.by_reason})
    for r in new:
        by_reason[r.reason] += r.count
    last = previous.last
    if new:
        latest = max(new, key=lambda r: r.time or "")
        last = LastRestart(
            pod=latest.pod,
            container=latest.container,
            reason=latest.reason,
            exit_code=latest.exit_code,
            time=latest.time,
        )
    return Restarts(
        total=previous.total + sum(r.count for r in new),
        by_reason=[ReasonCount(reason=k, count=v) for k, v in sorted(by_reason.items())],
        last=last,
        # Only pods that still exist: what a gone pod counted is already in the total.
        containers=[
            ContainerRestartCount(
                pod=p.name, uid=p.uid, container=c.name, restart_count=c.restart_count
            )
            for p in sorted(pods, key=lambda p: p.name)
            for c in p.containers
        ],
    )
