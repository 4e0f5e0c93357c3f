"""The quiet ToggleSet answers as kopf's does, and wakes its waiters only when its own state
changes (kopf's woke every waiter on every added or dropped toggle)."""

import asyncio

from kopf._cogs.aiokits import aiotoggles

from modelpilot.controller.kopf_toggles import QuietToggleSet


async def _indexing(kind: type[aiotoggles.ToggleSet], objects: int) -> tuple[int, bool]:
    """kopf's start-up: a toggle per object, a waiter per object for the whole set, each
    toggle dropped once its object is indexed. (wake-ups, whether every waiter got through)"""
    toggles = kind(all)
    wakeups = 0
    real_check = toggles.is_on

    def counted() -> bool:
        nonlocal wakeups
        wakeups += 1
        return real_check()

    toggles.is_on = counted  # type: ignore[method-assign]
    blocker = await toggles.make_toggle(name="orchestration blocker")
    mine = [await toggles.make_toggle(name=str(i)) for i in range(objects)]
    waiters = [asyncio.create_task(toggles.wait_for(True)) for _ in range(objects)]
    await asyncio.sleep(0)
    for toggle in mine:
        await toggles.drop_toggle(toggle)
        await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)  # the blocker is still off
    await toggles.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    return wakeups, all(w.done() for w in waiters)


def test_the_same_outcome_with_far_fewer_wakeups() -> None:
    kopfs, done = asyncio.run(_indexing(aiotoggles.ToggleSet, 200))
    assert done
    ours, done = asyncio.run(_indexing(QuietToggleSet, 200))
    assert done
    assert kopfs > 200 * 200 / 2  # quadratic
    # Linear: each waiter checks on waiting and once when woken; each add or drop once.
    assert ours <= 5 * 200


def test_states_and_member_toggles_as_kopfs() -> None:
    async def run() -> None:
        for fn in (all, any):
            ours, theirs = QuietToggleSet(fn), aiotoggles.ToggleSet(fn)
            assert ours.is_on() == theirs.is_on()
            pairs = [
                (await ours.make_toggle(v, name="x"), await theirs.make_toggle(v, name="x"))
                for v in (False, True, False)
            ]
            assert ours.is_on() == theirs.is_on()
            for a, b in pairs:
                await a.turn_to(True)
                await b.turn_to(True)
                assert ours.is_on() == theirs.is_on()
            # Someone waiting on one member toggle is woken when it turns.
            waiting = asyncio.create_task(pairs[0][0].wait_for(False))
            await asyncio.sleep(0)
            await pairs[0][0].turn_to(False)
            await asyncio.wait_for(waiting, 1)
            await theirs.drop_toggles([b for _, b in pairs])
            await ours.drop_toggles([a for a, _ in pairs])
            assert ours.is_on() == theirs.is_on() and len(ours) == 0

    asyncio.run(run())
