"""A fix for kopf's start-up at fleet scale (installed by `modelpilot run`).

While kopf fills its indexes at start-up, every object it sees gets a toggle in one
`ToggleSet` and a worker that waits on the set's condition until all are indexed. kopf's set
wakes every waiter whenever any toggle is added or dropped, and each woken waiter re-checks
every toggle: cubic in the number of objects. At 1,000 ModelDeployments x 10 pods (13,000
objects with their Deployments and Services) the operator spent minutes at full CPU and never
wrote a status. This set keeps the count of toggles that are off, so its state costs nothing
to read, and wakes its waiters only when that state changes; a member toggle turned on or off
wakes everyone, as before (someone may wait for that toggle alone)."""

import asyncio
from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles


class _Condition(asyncio.Condition):
    def __init__(self, owner: "QuietToggleSet") -> None:
        super().__init__()
        self.owner = owner

    def notify_all(self) -> None:
        """A member toggle turned (`Toggle.turn_to`): recount, and wake everyone."""
        self.owner.recount()
        super().notify_all()

    def changed(self) -> None:
        """Toggles were added or dropped: wake the waiters only if the set's state moved."""
        if self.owner.settle():
            super().notify_all()


class QuietToggleSet(aiotoggles.ToggleSet):
    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._quiet = _Condition(self)
        self._condition = self._quiet
        self._off = 0  # member toggles that are off
        self._state = super().is_on()

    def is_on(self) -> bool:
        if self._fn is all:
            return self._off == 0
        if self._fn is any:
            return len(self._toggles) > self._off
        return super().is_on()

    def recount(self) -> None:
        self._off = sum(1 for toggle in self._toggles if toggle.is_off())
        self._state = self.is_on()

    def settle(self) -> bool:
        """Whether the state differs from the last one seen (and remember it)."""
        state = self.is_on()
        moved, self._state = state != self._state, state
        return moved

    async def make_toggle(
        self,
        __val: bool = False,
        *,
        name: str | None = None,
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._quiet)
        async with self._quiet:
            self._toggles.add(toggle)
            self._off += not __val
            self._quiet.changed()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._quiet:
            for toggle in toggles:
                if toggle in self._toggles:
                    self._toggles.discard(toggle)
                    self._off -= toggle.is_off()
            self._quiet.changed()


def install() -> None:
    """kopf creates its sets as `aiotoggles.ToggleSet(...)` when the operator starts."""
    aiotoggles.ToggleSet = QuietToggleSet  # type: ignore[misc]
