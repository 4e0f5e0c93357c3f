"""The replay's queue, with plain numbers: requests in flight carried from step to step,
kept on the replica they were sent to, and the arrivals a history's completions imply."""

import pytest

from modelpilot.advisor.model import History
from modelpilot.advisor.replay import ModelBehaviour, Replicas, arrivals, carried, fit

MODEL = ModelBehaviour(base_seconds=0.2, per_request_seconds=0.05)  # 20 requests/s at most


def test_a_replica_that_keeps_up_settles_on_the_equilibrium() -> None:
    # 15 requests/s on one replica: c = 15 x (0.2 - 0.05) / (1 - 15 x 0.05) = 9 in flight.
    inflight = 0.0
    for _ in range(40):
        inflight = carried(inflight, 15.0, MODEL, step=15.0)
    assert inflight == pytest.approx(9.0, rel=1e-3)
    # Under one request in flight latency is the base: c = rps x base.
    assert carried(0.0, 2.0, MODEL, step=60.0) == pytest.approx(2.0 * 0.2, rel=0.01)


def test_what_a_replica_cannot_serve_piles_up_and_drains_later() -> None:
    inflight = 0.0
    for _ in range(4):  # 30 requests/s for a minute: 10/s over what it completes
        inflight = carried(inflight, 30.0, MODEL, step=15.0)
    assert inflight == pytest.approx(600, rel=0.05)
    for _ in range(4):  # nothing arrives: it drains at (nearly) 20 a second
        inflight = carried(inflight, 0.0, MODEL, step=15.0)
        assert inflight >= 0
    assert inflight < 10


def test_a_backlog_stays_on_the_replica_it_queued_on() -> None:
    replicas = Replicas()
    for _ in range(4):
        queued, slow = replicas.step(30.0, 1, MODEL, 15.0, wait_seconds=0.0)
    assert queued == pytest.approx(600, rel=0.05) and slow > 25  # 600 in flight: 30 s
    # Three replicas come up: they take three quarters of new arrivals, none of the backlog,
    # and the old replica (a quarter of new requests, over 5%) sets the step's latency.
    queued, slow = replicas.step(30.0, 4, MODEL, 15.0, wait_seconds=0.0)
    assert [count for count, _ in replicas.groups] == [1, 3]
    new = replicas.groups[1][1]
    assert new == pytest.approx(carried(0.0, 7.5, MODEL, 15.0))
    assert slow > 10  # pooled over the four, the backlog would answer in 0.9 s
    for _ in range(10):
        queued, slow = replicas.step(30.0, 4, MODEL, 15.0, wait_seconds=0.0)
    assert len(replicas.groups) == 1 and slow < 0.5  # drained, the groups merge


def test_requests_that_find_no_replica_wait_for_the_first() -> None:
    replicas = Replicas()
    queued, slow = replicas.step(2.0, 0, MODEL, 15.0, wait_seconds=10.0)
    assert (queued, slow) == (30.0, 10.2)
    queued, _ = replicas.step(2.0, 1, MODEL, 15.0, wait_seconds=0.0)
    assert 0 < queued < 30  # the replica up takes them, and serves them


def test_arrivals_are_completions_plus_what_piled_up() -> None:
    # Meters count a request as it ends: while 100 pile up in 10 s, 20/s complete of 30/s.
    h = History(
        times=[0.0, 10.0, 20.0],
        step=10.0,
        concurrency=[5.0, 105.0, None],
        latency=[0.2, 5.0, None],
        rps=[25.0, 20.0, None],
        errors=[0.0, 0.0, 0.0],
        active=[1.0, 1.0, 1.0],
        starting=[0.0, 0.0, 0.0],
        desired=[1.0, 1.0, 1.0],
        queue=[None, None, None],
    )
    assert arrivals(h) == [25.0, 30.0, 0.0]  # unknown: none counted


def test_the_replay_starts_with_the_replicas_up_at_the_lookbacks_start() -> None:
    n = 40
    h = History(
        times=[60.0 * i for i in range(n)],
        step=60.0,
        concurrency=[1.0 + (i % 4) for i in range(n)],
        latency=[0.2 + 0.05 * (i % 4) / 3 for i in range(n)],
        rps=[5.0 - 0.5 * (i % 4) for i in range(n)],
        errors=[0.0] * n,
        active=[3.0] * n,
        starting=[0.0] * n,
        desired=[3.0] * n,
        queue=[None] * n,
    )
    fitted = fit(h)
    assert fitted is not None and fitted.initial == 3
