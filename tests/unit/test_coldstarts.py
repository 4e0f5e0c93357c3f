"""Cold starts from pod creation to first Ready: each pod once, across operator restarts."""

from modelpilot.api.status import ColdStart
from modelpilot.observer.coldstarts import KEPT, account, from_status, new_samples
from modelpilot.observer.pods import ContainerInfo, PodInfo


def pod(name: str, created: str, ready_at: str | None, restarts: int = 0) -> PodInfo:
    return PodInfo(
        name=name,
        uid=f"uid-{name}",
        created=f"2026-01-01T00:{created}Z",
        ready="True" if ready_at else "False",
        ready_since=f"2026-01-01T00:{ready_at}Z" if ready_at else None,
        containers=(ContainerInfo(name="model", restart_count=restarts),),
    )


def observe(previous: ColdStart, pods: list[PodInfo], served: set[str]) -> ColdStart:
    return account(previous, new_samples(previous, pods, served))


def test_a_pod_counts_once_from_creation_to_its_first_ready() -> None:
    starting = [pod("a", "00:00", None), pod("b", "00:10", "01:40")]
    first = observe(ColdStart(), starting, set())
    assert (first.samples, first.last_seconds, first.p50_seconds) == (1, 90.0, 90.0)
    assert [s.wire() for s in first.recent] == [
        {"pod": "b", "readyTime": "2026-01-01T00:01:40Z", "seconds": 90.0}
    ]
    ready = [pod("a", "00:00", "02:00"), pod("b", "00:10", "01:40")]
    second = observe(first, ready, {"uid-b"})
    assert (second.samples, second.last_seconds, second.p50_seconds) == (2, 120.0, 105.0)
    assert observe(second, ready, {"uid-a", "uid-b"}) == second


def test_after_an_operator_restart_counted_pods_are_not_counted_again() -> None:
    written = observe(ColdStart(), [pod("a", "00:00", "02:00"), pod("b", "00:00", "03:00")], set())
    restored = from_status({"coldStart": written.wire()})
    assert restored == written
    # A new operator has seen nothing Ready yet; "a" also fell out of a short memory.
    short = restored.model_copy(update={"recent": restored.recent[-1:]})
    again = observe(short, [pod("a", "00:00", "02:00"), pod("b", "00:00", "03:00")], set())
    assert again == short
    later = observe(short, [pod("c", "04:00", "04:30")], set())
    assert (later.samples, later.last_seconds) == (3, 30.0)


def test_a_pod_that_crashed_before_it_was_ready_is_not_a_cold_start() -> None:
    assert observe(ColdStart(), [pod("a", "00:00", "09:00", restarts=3)], set()).samples == 0


def test_recent_keeps_the_latest_and_the_median_follows_them() -> None:
    starts = ColdStart()
    for i in range(KEPT + 5):
        starts = observe(starts, [pod(f"p{i}", f"{i:02d}:00", f"{i:02d}:{i:02d}")], set())
    assert starts.samples == KEPT + 5
    assert len(starts.recent) == KEPT
    assert starts.recent[0].pod == "p5"
    assert starts.p50_seconds == 9.5  # the median of 5..14 s


def test_an_unreadable_status_restarts_the_count() -> None:
    assert from_status({"coldStart": {"samples": "many"}}) == ColdStart()
    assert from_status({}) == ColdStart()
