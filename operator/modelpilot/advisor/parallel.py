"""Judge many models on several cores (`modelpilot run --advisor-processes N`). A judgement
is pure CPU (replaying each troubled model's traffic under candidate settings), so the work
goes to worker processes, not threads; models travel in a few batches per process so that
pickling stays small next to the work. A model whose judgement raises gets its exception
back, and the others their verdicts."""

import asyncio
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

from modelpilot.advisor.judge import Verdict, judge
from modelpilot.advisor.model import History
from modelpilot.api import Key
from modelpilot.api.spec import ModelDeploymentSpec

# judge()'s arguments: key, spec, status, history, now, lookback seconds, where it was read.
Case = tuple[Key, ModelDeploymentSpec, Mapping[str, Any], History | None, datetime, int, str]
BATCHES_PER_PROCESS = 4  # a slow batch (many troubled models) then holds up less


def judge_one(case: Case) -> Verdict | Exception:
    try:
        return judge(*case)
    except Exception as exc:  # one model's failure is its own
        return exc


def _judge_batch(cases: list[Case]) -> list[Verdict | Exception]:
    return [judge_one(case) for case in cases]


_all_up: Any = None  # each worker's copy of the pool's start barrier


def _ready() -> bool:
    """Wait until every worker holds one of these: the pool starts a worker only when none
    is idle, so `processes` calls that returned at once could all run on the first."""
    _all_up.wait(timeout=60)
    return True


def _announce(started: Any, all_up: Any) -> None:
    """Each worker's first act: say its pid (the benchmark measures the workers' memory)."""
    global _all_up
    _all_up = all_up
    started.put(os.getpid())


class Judges:
    """A pool of `processes` workers, kept for the operator's life."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # forkserver: workers start from a clean process, not a fork of one with threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["modelpilot.advisor.judge"])
        self._started = context.SimpleQueue()
        self._pids: set[int] = set()
        all_up = context.Barrier(processes)
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=context,
            initializer=_announce,
            initargs=(self._started, all_up),
        )

    async def start(self) -> None:
        """Start every worker now (each imports the advisor once), not in the first
        evaluation."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self.processes))
        )

    async def all(self, cases: list[Case]) -> list[Verdict | Exception]:
        """Each case's verdict (or the exception its judgement raised), in order."""
        if not cases:
            return []
        loop = asyncio.get_running_loop()
        size = -(-len(cases) // (self.processes * BATCHES_PER_PROCESS))
        batches = [cases[i : i + size] for i in range(0, len(cases), size)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _judge_batch, batch) for batch in batches)
        )
        return [verdict for batch in results for verdict in batch]

    def pids(self) -> list[int]:
        """The workers started so far."""
        while not self._started.empty():
            self._pids.add(self._started.get())
        return sorted(self._pids)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
