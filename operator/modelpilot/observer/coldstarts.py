"""Cold starts, measured: from a pod's creation to its first Ready (scheduling, image pull,
model load; what the first request of a scale-up waits for).

A pod counts once, when it is first seen Ready. Status keeps the latest few samples, so that
after an operator restart the pods already counted (Ready no later than the newest sample)
are not counted again. A pod that restarted before it was ever Ready is left out: its span
measures a crash loop, not a start.
"""

import statistics
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from modelpilot.api.status import ColdStart, ColdStartSample
from modelpilot.observer.pods import PodInfo
from modelpilot.times import parse_time

KEPT = 10  # samples in status.coldStart.recent


def from_status(status: Mapping[str, Any]) -> ColdStart:
    """status.coldStart as last written; empty when absent or unreadable (status is
    user-writable: a bad value restarts the count, it stops nothing)."""
    try:
        return ColdStart.model_validate(status.get("coldStart") or {})
    except ValidationError:
        return ColdStart()


def new_samples(
    previous: ColdStart, pods: Iterable[PodInfo], served: Collection[str]
) -> list[ColdStartSample]:
    """Pods Ready for the first time since `previous`: `served` holds the UIDs of pods this
    operator already saw Ready."""
    counted = {s.pod for s in previous.recent}
    newest = max((s.ready_time for s in previous.recent), default="")
    found = []
    for pod in pods:
        if pod.ready != "True" or pod.terminating or pod.uid in served or pod.name in counted:
            continue
        ready_time = pod.ready_since or ""
        created, ready = parse_time(pod.created), parse_time(ready_time)
        if created is None or ready is None or ready_time < newest:
            continue
        if any(c.restart_count for c in pod.containers):
            continue
        seconds = (ready - created).total_seconds()
        if seconds >= 0:
            found.append(ColdStartSample(pod=pod.name, ready_time=ready_time, seconds=seconds))
    return sorted(found, key=lambda s: (s.ready_time, s.pod))


def account(previous: ColdStart, new: list[ColdStartSample]) -> ColdStart:
    if not new:
        return previous
    recent = [*previous.recent, *new][-KEPT:]
    return ColdStart(
        last_seconds=new[-1].seconds,
        p50_seconds=statistics.median(s.seconds for s in recent),
        samples=previous.samples + len(new),
        recent=recent,
    )
