"""Judging in worker processes gives the verdicts judging in-process gives, in order, and a
model whose judgement raises gets its own exception while the others get their verdicts."""

import asyncio
import os
from datetime import UTC, datetime

from modelpilot.advisor import source
from modelpilot.advisor.judge import judge
from modelpilot.advisor.parallel import Case, Judges
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.devcluster.scenarios import catalogue, history, simulate

START = 1.7e9


def spec(settings: dict[str, int]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"template": {}, "port": 8000, "autoscaling": settings}
    )


def test_worker_processes_judge_as_the_operator_would() -> None:
    cases: list[Case] = []
    for scenario in catalogue():
        h = history(simulate(scenario, 3 * 3600), START)
        now = datetime.fromtimestamp(h.times[-1] + 30, UTC)
        key = ("ns", scenario.name)
        cases.append((key, spec(scenario.settings.wire()), {}, h, now, 3 * 3600, source.FROM_RAW))
    # A history whose signals do not line up with its times (no source makes one): raises.
    torn = cases[2][3].model_copy(update={"rps": [1.0]})  # type: ignore[union-attr]
    broken: Case = (*cases[2][:3], torn, *cases[2][4:])  # type: ignore[assignment]
    cases.insert(1, broken)

    judges = Judges(2)
    try:
        asyncio.run(judges.start())
        verdicts = asyncio.run(judges.all(cases))
        pids = judges.pids()
    finally:
        judges.close()

    assert len(pids) == 2 and os.getpid() not in pids  # the workers, each started once
    assert len(verdicts) == len(cases)
    for case, verdict in zip(cases, verdicts, strict=True):
        if case is broken:
            assert isinstance(verdict, Exception)
            continue
        assert not isinstance(verdict, Exception), verdict
        expected = judge(*case)
        assert verdict.evaluation == expected.evaluation, case[0]
        assert verdict.condition == expected.condition
