"""Every --gpu-interval seconds: GPU series for all models (six instant queries, agent
and DCGM alike), summarised into status.gpu; absent when a model has none."""

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from prometheus_api_client import PrometheusConnect

from modelpilot.controller.periodic import every
from modelpilot.controller.refs import Key, ModelRef
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.gpu.summary import QUERIES, per_model, per_pod
from modelpilot.observer.pods import PodInfo


class GpuLoop:
    def __init__(
        self,
        prometheus: PrometheusConnect | None,
        worker: StatusWorker,
        models: Mapping[Key, Collection[ModelRef]],
        pods: Mapping[Key, Collection[PodInfo]],
        interval: float,
    ) -> None:
        self.prometheus, self.worker, self.models, self.pods = prometheus, worker, models, pods
        self.interval = interval

    async def run(self) -> None:
        if self.prometheus is None:
            return
        await every(self.interval, self.tick, "GPU summary")

    async def tick(self) -> None:
        assert self.prometheus is not None
        prometheus = self.prometheus

        async def one(query: str) -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = await asyncio.to_thread(prometheus.custom_query, query)
            return result

        answers = await asyncio.gather(*(one(q) for q in QUERIES.values()))
        usage = per_pod(dict(zip(QUERIES, answers, strict=True)))
        keys = list(self.models.keys())
        pods_of = {key: [p.name for p in self.pods.get(key) or ()] for key in keys}
        gpu = per_model(usage, pods_of)
        for key in keys:
            # None removes the section (merge patch): no GPU series is no GPU, not zero.
            self.worker.contribute(key, {"gpu": gpu.get(key)})
