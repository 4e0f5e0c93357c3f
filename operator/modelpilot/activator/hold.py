"""Requests held per model until it has a Ready replica: bounded, with a deadline."""

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelpilot.api import Key


class QueueFull(Exception):
    """The model already has as many held requests as its queue takes."""


class ShuttingDown(Exception):
    """The activator is stopping: the request should be retried elsewhere."""


@dataclass
class _Model:
    addresses: Sequence[str] = ()
    held: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Holds:
    """Each model's Ready pod IPs (from the pod watch) and the requests waiting for one."""

    def __init__(self) -> None:
        self._models: dict[Key, _Model] = {}
        self.closing = False

    def close(self) -> None:
        """Release every held request with ShuttingDown, and refuse new ones."""
        self.closing = True
        for model in self._models.values():
            model.ready.set()

    def set_addresses(self, key: Key, addresses: Sequence[str]) -> None:
        model = self._models.setdefault(key, _Model())
        model.addresses = tuple(addresses)
        if model.addresses:
            model.ready.set()
        else:
            model.ready.clear()
        if not model.addresses and not model.held:
            del self._models[key]

    def pick(self, key: Key) -> str | None:
        """A Ready pod of the model (spread at random), or None."""
        model = self._models.get(key)
        return random.choice(model.addresses) if model and model.addresses else None

    def held(self, key: Key) -> int:
        model = self._models.get(key)
        return model.held if model else 0

    async def wait(self, key: Key, limit: int, patience: float) -> str:
        """A Ready pod's address once there is one. QueueFull at once when `limit`
        requests already wait; TimeoutError after `patience` seconds; ShuttingDown once
        `close` was called."""
        if self.closing:
            raise ShuttingDown()
        model = self._models.setdefault(key, _Model())
        if model.held >= limit:
            raise QueueFull()
        model.held += 1
        try:
            async with asyncio.timeout(patience):
                while True:
                    await model.ready.wait()
                    if self.closing:
                        raise ShuttingDown()
                    if address := self.pick(key):
                        return address
                    model.ready.clear()  # gone again between the wake and the pick
        finally:
            model.held -= 1
            if not model.held and not model.addresses:
                self._models.pop(key, None)
