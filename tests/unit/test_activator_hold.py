"""Held requests: bounded per model, released by a Ready replica, or out of patience."""

import asyncio

import pytest

from modelpilot.activator.hold import Holds, QueueFull, ShuttingDown
from modelpilot.meter.proxy import held_seconds

KEY = ("ml", "chat")


async def test_held_requests_go_to_the_replica_that_becomes_ready() -> None:
    holds = Holds()
    waiting = [asyncio.create_task(holds.wait(KEY, 10, 5)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert holds.held(KEY) == 3 and holds.pick(KEY) is None
    holds.set_addresses(KEY, ["10.0.0.1"])
    assert await asyncio.gather(*waiting) == ["10.0.0.1"] * 3
    assert holds.held(KEY) == 0


async def test_a_full_queue_refuses_at_once_and_others_wait_on() -> None:
    holds = Holds()
    first = asyncio.create_task(holds.wait(KEY, 1, 5))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull):
        await holds.wait(KEY, 1, 5)
    holds.set_addresses(KEY, ["10.0.0.1"])
    assert await first == "10.0.0.1"


async def test_patience_runs_out() -> None:
    holds = Holds()
    with pytest.raises(TimeoutError):
        await holds.wait(KEY, 10, 0.05)
    assert holds.held(KEY) == 0


async def test_a_replica_gone_before_the_wake_keeps_them_waiting() -> None:
    holds = Holds()
    waiting = asyncio.create_task(holds.wait(KEY, 10, 5))
    await asyncio.sleep(0.01)
    holds.set_addresses(KEY, ["10.0.0.1"])
    holds.set_addresses(KEY, [])  # gone again before the waiter ran
    await asyncio.sleep(0.01)
    assert not waiting.done()
    holds.set_addresses(KEY, ["10.0.0.2"])
    assert await waiting == "10.0.0.2"


def test_the_meter_reads_the_held_time_defensively() -> None:
    assert held_seconds("12.5") == 12.5
    assert held_seconds(None) == held_seconds("") == held_seconds("soon") == 0.0
    assert held_seconds("-3") == held_seconds("1e9") == held_seconds("nan") == 0.0


async def test_closing_releases_held_requests_and_refuses_new_ones() -> None:
    holds = Holds()
    waiting = asyncio.create_task(holds.wait(KEY, 10, 5))
    await asyncio.sleep(0.01)
    holds.close()
    with pytest.raises(ShuttingDown):
        await waiting
    with pytest.raises(ShuttingDown):
        await holds.wait(KEY, 10, 5)
