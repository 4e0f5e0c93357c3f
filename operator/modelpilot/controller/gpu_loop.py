"""Every --gpu-interval seconds: GPU series for all models (six instant queries, agent
and DCGM alike), summarised into status.gpu; absent when a model has none."""

import asyncio
from typing import Any

from modelpilot.controller.periodic import Loop
from modelpilot.gpu.summary import QUERIES, per_model, per_pod


class GpuLoop(Loop):
    what = "GPU summary"

    async def run(self) -> None:
        if self.prometheus is not None:
            await super().run()

    async def tick(self) -> None:
        assert self.prometheus is not None
        prometheus = self.prometheus

        async def one(query: str) -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = await asyncio.to_thread(prometheus.custom_query, query)
            return result

        answers = await asyncio.gather(*(one(q) for q in QUERIES.values()))
        usage = per_pod(dict(zip(QUERIES, answers, strict=True)))
        keys = list(self.indexes.models.keys())
        pods_of = {key: [p.name for p in self.indexes.pods.get(key) or ()] for key in keys}
        gpu = per_model(usage, pods_of)
        for key in keys:
            # None removes the section (merge patch): no GPU series is no GPU, not zero.
            self.worker.contribute(key, {"gpu": gpu.get(key)})
