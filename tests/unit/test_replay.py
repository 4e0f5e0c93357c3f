"""The replay: fitted from a history, it must reproduce that history under the settings
that produced it (its self-check), and answer what-ifs in the right direction."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelpilot.advisor.auto import Change, changes_of
from modelpilot.advisor.judge import with_measured_cold_start
from modelpilot.advisor.model import History
from modelpilot.advisor.replay import (
    fit,
    outcome,
    replay,
    replay_outcome,
    run,
    trace_arrivals,
)
from modelpilot.advisor.whatif import (
    AS_IT_RAN,
    as_it_ran,
    candidate_settings,
    compare,
    gpus_per_replica,
    parse_candidate,
    parse_trace,
    self_check,
    table,
)
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.devcluster.scenarios import catalogue, history, simulate
from modelpilot.times import format_time

SIX_HOURS = 6 * 3600
SCENARIOS = {s.name: s for s in catalogue()}
# The public trace lives beside the repository (../shared/traces, CC-BY 4.0: Azure LLM
# inference trace 2023, Patel et al., "Splitwise", ISCA 2024); it is not copied here.
DEMO = Path(__file__).resolve().parents[1] / "data" / "demo-history.json"
TRACE = (
    Path(__file__).resolve().parents[3] / "shared" / "traces" / "azure-llm-inference-2023-conv.csv"
)


def observed(name: str) -> History:
    return history(simulate(SCENARIOS[name], SIX_HOURS), 1.7e9)


def test_the_advisor_sums_a_replay_up_as_its_history_would_be() -> None:
    # The advisor's candidates skip the History (replay_outcome); what-if shows it: the same
    # figures either way, under the settings in force and under others.
    for scenario in SCENARIOS.values():
        fitted = fit(observed(scenario.name))
        assert fitted is not None
        for settings in (
            scenario.settings,
            scenario.settings.model_copy(update={"min_replicas": 0}),
            scenario.settings.model_copy(update={"scale_down_delay_seconds": 30}),
        ):
            for objective in (None, 0.3, 1.0):
                assert replay_outcome(fitted, settings, objective) == outcome(
                    replay(fitted, settings), objective
                ), (scenario.name, settings, objective)


def test_the_replay_reproduces_every_scenario_it_was_fitted_from() -> None:
    rows, misses = [], []
    for name, scenario in SCENARIOS.items():
        seen = observed(name)
        fitted = fit(seen)
        assert fitted is not None, name
        objective = scenario.objective_ms / 1000 if scenario.objective_ms else 1.0
        was, again = outcome(seen, objective), outcome(replay(fitted, scenario.settings), objective)
        assert was.latency_p95 and again.latency_p95
        hours = again.replica_hours / was.replica_hours - 1
        p95 = again.latency_p95 / was.latency_p95 - 1
        rows.append(
            f"{name:18s} replica-hours {was.replica_hours:6.1f} -> {again.replica_hours:6.1f} "
            f"({hours:+6.1%})   p95 {was.latency_p95 * 1000:6.0f} -> "
            f"{again.latency_p95 * 1000:6.0f} ms ({p95:+6.1%})"
        )
        if abs(hours) > 0.10 or abs(p95) > 0.25:
            misses.append(name)
    print("\nreplay self-check (observed -> replayed with the same settings):")
    print("\n".join(rows))
    assert misses == []


def _demo() -> tuple[History, AutoscalingSpec, list[Change]]:
    doc = json.loads(DEMO.read_text())
    changes = changes_of({"advisor": {"history": doc["changes"]}})
    return History.model_validate(doc["history"]), AutoscalingSpec(**doc["settings"]), changes


def test_the_replay_reproduces_the_demos_history_backlogs_included() -> None:
    # Recorded from `make demo` on the real node. Its first burst meets one cold replica,
    # queues up to 375 requests and answers them up to 29 s late; the second queues 199 on
    # two. The replay carries requests in flight from step to step and keeps each on the
    # replica it was sent to; the curve is fitted on Little's-law means (concurrency /
    # completions), which the latency series' lag does not drag (a plain least-squares line
    # through the latency had a base of 0.67 s where the quiet points say 0.23 s).
    seen, now, changes = _demo()
    ran = as_it_ran(now, changes, seen.times)
    assert len(ran[1]) == 2  # Auto mode changed scaleDownDelaySeconds twice
    fitted = fit(seen)
    assert fitted is not None
    assert 0.15 < fitted.base_seconds < 0.35
    columns = compare(fitted, now, [], 1.0, 0, seen, ran)
    print("\n" + table(columns, "p95 within 1 s", fitted))
    was, again = columns[0].outcome, columns[1].outcome
    assert again.replica_hours == pytest.approx(was.replica_hours, rel=0.10)
    assert again.latency_p50 == pytest.approx(was.latency_p50, rel=0.25)
    assert again.latency_p95 == pytest.approx(was.latency_p95, rel=0.25)
    assert was.attainment is not None and again.attainment is not None
    assert abs(again.attainment - was.attainment) < 0.10


def test_the_fit_finds_the_service_curve_and_cold_start() -> None:
    fitted = fit(observed("target-too-high"))  # base 0.6 s, +0.1 s per extra request
    assert fitted is not None
    assert fitted.base_seconds == pytest.approx(0.6, rel=0.05)
    assert fitted.per_request_seconds == pytest.approx(0.1, rel=0.05)
    cold = fit(observed("cold-starts"))  # replicas take 480 s to start
    assert cold is not None and cold.cold_start_seconds == pytest.approx(480, rel=0.1)


def test_a_cold_start_measured_from_pods_wins_over_the_coarse_series() -> None:
    seen = observed("cold-starts")
    status = {"coldStart": {"p50Seconds": 300.5, "samples": 4}}
    measured = with_measured_cold_start(seen, status)
    assert measured is not None and measured.cold_start_seconds == 300.5
    fitted = fit(measured)
    assert fitted is not None and fitted.behaviour.startup_seconds == 300.5
    for unusable in ({}, {"coldStart": {"p50Seconds": "slow"}}, {"coldStart": {"p50Seconds": 0}}):
        assert with_measured_cold_start(seen, unusable) is seen
    assert with_measured_cold_start(None, status) is None


def test_too_little_history_cannot_be_fitted() -> None:
    seen = observed("healthy")
    assert fit(seen.since(seen.times[-5])) is None


def test_a_longer_delay_trades_replica_hours_for_fewer_cold_starts() -> None:
    seen = observed("thrash")
    fitted = fit(seen)
    assert fitted is not None
    current = SCENARIOS["thrash"].settings
    longer = candidate_settings(current, parse_candidate("scaleDownDelaySeconds=1500"))
    columns = compare(fitted, current, [("longer", longer)], 0.5, 1, seen)
    assert [c.name for c in columns] == ["observed", "current", "longer"]
    now, then = columns[1].outcome, columns[2].outcome
    assert then.replica_hours > now.replica_hours
    assert then.cold_starts < now.cold_starts
    assert then.scale_events_per_hour < now.scale_events_per_hour
    assert then.attainment is not None and now.attainment is not None
    assert then.attainment > now.attainment
    assert columns[2].gpu_hours == then.replica_hours  # one GPU per replica
    text = table(columns, "p95 within 500 ms", fitted)
    assert "scaleDownDelaySeconds" in text and "replay of the current settings vs observed" in text


def _change(at: float, setting: str, before: int, after: int, **more: object) -> Change:
    return Change.model_validate(
        {
            "time": format_time(datetime.fromtimestamp(at, UTC)),
            "setting": setting,
            "from": before,
            "to": after,
        }
        | {"reason": "Thrash", "message": "", **more}
    )


def test_settings_as_they_ran_undo_auto_modes_later_changes() -> None:
    now = AutoscalingSpec(min_replicas=2, scale_down_delay_seconds=600)
    times = [1000.0 + 60 * n for n in range(10)]
    changes = [
        _change(900, "scale_down_delay_seconds", 150, 300),  # before the lookback: in force
        _change(1130, "scale_down_delay_seconds", 300, 600),
        _change(1250, "min_replicas", 1, 4),
        _change(1260, "min_replicas", 4, 1, reverted=True),  # undone at the same point
        _change(1400, "min_replicas", 1, 2),
    ]
    first, timeline = as_it_ran(now, changes[::-1], times)
    assert (first.scale_down_delay_seconds, first.min_replicas) == (300, 1)
    assert [(point, s.scale_down_delay_seconds, s.min_replicas) for point, s in timeline] == [
        (3, 600, 1),
        (5, 600, 1),
        (7, 600, 2),
    ]
    assert as_it_ran(now, [], times) == (now, [])


def test_the_self_check_replays_settings_as_auto_mode_changed_them() -> None:
    # Thrash for three hours, then Auto mode lengthens the delay: replaying the settings in
    # force now as if they had run all along misses the first half's cold starts and cost.
    scenario = SCENARIOS["thrash"]
    longer = scenario.settings.model_copy(update={"scale_down_delay_seconds": 1500})
    start, half = 1.7e9, SIX_HOURS // 2
    steps = run(
        scenario.settings,
        scenario.load,
        scenario.behaviour,
        SIX_HOURS,
        changed=[(half // 15, longer)],
    )
    seen = history(steps, start)
    change = _change(start + half - 1, "scale_down_delay_seconds", 300, 1500)
    ran = as_it_ran(longer, [change], seen.times)
    fitted = fit(seen)
    assert fitted is not None
    columns = compare(fitted, longer, [], 1.0, 0, seen, ran)
    assert [c.name for c in columns] == ["observed", AS_IT_RAN, "current"]
    check = self_check(columns)
    assert check is not None and check["column"] == AS_IT_RAN
    assert abs(check["replica_hours"]) <= 0.10 and abs(check["latency_p95"]) <= 0.25, check
    seen_out, now_out = columns[0].outcome, columns[2].outcome
    assert now_out.cold_starts < seen_out.cold_starts * 0.75  # what the check would miss
    assert "the settings as Auto mode changed them" in table(columns, "p95 within 1 s", fitted)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("minReplicas", "expected setting=value"),
        ("replicas=3", "expected setting=value"),
        ("minReplicas=two", "'two' is not a whole number"),
    ],
)
def test_bad_candidates_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_candidate(text)


def test_candidates_are_validated_as_the_crd_would() -> None:
    current = AutoscalingSpec(min_replicas=1, max_replicas=4)
    assert parse_candidate("minReplicas=2,scale_down_delay_seconds=60") == {
        "min_replicas": 2,
        "scale_down_delay_seconds": 60,
    }
    with pytest.raises(ValueError, match="minReplicas above maxReplicas"):
        candidate_settings(current, {"min_replicas": 5})
    with pytest.raises(ValueError, match="autoscalingWindowSeconds"):
        candidate_settings(current, {"autoscaling_window_seconds": 1})


def test_gpus_per_replica_sums_the_containers_limits() -> None:
    template = {
        "spec": {
            "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": 2}}},
                {"resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}}},
                {"name": "sidecar"},
            ]
        }
    }
    assert gpus_per_replica(template) == 3
    assert gpus_per_replica({}) == 0


def test_a_trace_becomes_arrivals_per_step() -> None:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:00.5,1,2", "", "10.0"]
    times = parse_trace(lines)
    assert len(times) == 2
    assert trace_arrivals([0.0, 1.0, 59.0, 60.0, 130.0], 60) == [3 / 60, 1 / 60, 1 / 60]
    with pytest.raises(ValueError, match="line 3: 'yesterday'"):
        parse_trace(["t", "1.0", "yesterday"])


def test_the_azure_trace_replays_against_a_fitted_model() -> None:
    if not TRACE.exists():
        pytest.skip(f"no public trace at {TRACE}")
    fitted = fit(observed("target-too-high"))
    assert fitted is not None
    arrivals = trace_arrivals(parse_trace(TRACE.read_text().splitlines()), fitted.step)
    # One hour of a production service: 19,366 rows (its README says 19,365).
    assert sum(arrivals) * fitted.step == pytest.approx(19_366)
    traced = fitted.model_copy(update={"arrivals": arrivals})
    small = AutoscalingSpec(min_replicas=1, max_replicas=2, concurrency_target=2)
    large = small.model_copy(update={"max_replicas": 40})
    # ~5.4 requests/s at 0.6 s and more each: 2 replicas cannot keep up, 40 can.
    tight, roomy = (outcome(replay(traced, s), 0.7) for s in (small, large))
    assert tight.attainment is not None and roomy.attainment is not None
    assert roomy.attainment > tight.attainment
    assert roomy.replica_hours > tight.replica_hours
