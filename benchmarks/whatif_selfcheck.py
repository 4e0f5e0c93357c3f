"""The replay's self-check through Prometheus: how far a replay of each catalogue history,
under the settings that produced it, is from what was observed, read the way the advisor and
`modelpilot whatif` read it (60 s points, 2-step rate windows).

Six hours of each scenario's contract series are backfilled into a real Prometheus twelve
times, shifted 0, 5, ..., 55 s against the 60 s grid (how the grid falls on the load's
changes is what moves the fit). Each history is fitted as `modelpilot whatif` and the
advisor fit it (the curve on Little's-law means, concurrency / completions) and, as the
reference, with the curve on the latency series (a percentile from histogram buckets,
scaled to the mean: the previous design). Printed per scenario: replica-hours and p95 off, the range
over the twelve alignments, and how many alignments hold the issue's bounds (replica-hours
within 10%, p95 within 25%).

Run: .venv/bin/python benchmarks/whatif_selfcheck.py
"""

import asyncio
import shutil
import tempfile
from pathlib import Path

from prometheus_api_client import PrometheusConnect

from modelpilot.advisor import source
from modelpilot.advisor.model import History, Objective
from modelpilot.advisor.replay import Fitted, curve, fit, measured, outcome, replay
from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import Scenario, catalogue, series, simulate

SIX_HOURS = 6 * 3600
STEP = 60
SHIFTS = range(0, STEP, 5)
END = 1_800_000_000.0  # any fixed instant: the grid is aligned to it
COST_BOUND, P95_BOUND = 0.10, 0.25


def histories(scenarios: list[Scenario]) -> dict[tuple[int, str], History]:
    """(shift, scenario) -> the history read back from Prometheus at 60 s points."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-selfcheck-"))
    server = PrometheusServer(workdir / "prometheus")
    try:
        runs = {s.name: simulate(s, SIX_HOURS) for s in scenarios}
        text = to_openmetrics(
            sample
            for shift in SHIFTS
            for s in scenarios
            for sample in series(
                runs[s.name],
                END - STEP - shift - SIX_HOURS,
                f"shift-{shift}",
                s.name,
                with_queue=s.async_load is not None,
            )
        )
        backfill(text, server.data_dir)
        server.start()
        client = PrometheusConnect(url=server.url, disable_ssl=True, headers=source.UNCOMPRESSED)
        objectives = {
            (f"shift-{shift}", s.name): Objective(
                seconds=s.objective_ms / 1000 if s.objective_ms else None
            )
            for shift in SHIFTS
            for s in scenarios
        }
        # The lookback stops short of the backfill's first points, where windows are partial.
        fetched = asyncio.run(
            source.fetch(client, objectives, SIX_HOURS - 300, STEP, END, use_rules=False)
        )
        return {
            (shift, s.name): fetched.histories[(f"shift-{shift}", s.name)]
            for shift in SHIFTS
            for s in scenarios
        }
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def on_the_series(seen: History) -> Fitted | None:
    """The previous design's curve: fitted on the latency series (a percentile from
    histogram buckets) scaled down by its typical ratio to the mean, not on Little's law."""
    fitted = fit(seen)
    if fitted is None:
        return None
    points = [
        (c / a, lat / fitted.tail_ratio)
        for c, r, lat, a in zip(seen.concurrency, seen.rps, seen.latency, seen.active, strict=True)
        if c is not None and r and a and c > 0 and lat is not None
    ]
    base, slope = curve(points)
    return fitted.model_copy(update={"base_seconds": base, "per_request_seconds": slope})


def off(fitted: Fitted, seen: History, scenario: Scenario) -> tuple[float, float]:
    """(replica-hours, p95) of the replay relative to what was observed."""
    was, again = outcome(seen, None), outcome(replay(fitted, scenario.settings), None)
    assert was.latency_p95 and again.latency_p95
    return again.replica_hours / was.replica_hours - 1, again.latency_p95 / was.latency_p95 - 1


def span(values: list[float]) -> str:
    return f"{min(values) * 100:+4.0f}%..{max(values) * 100:+4.0f}%"


def main() -> None:
    scenarios = catalogue()
    read = histories(scenarios)
    print(
        f"replay vs observed, through Prometheus at {STEP} s points, {len(SHIFTS)} grid "
        f"alignments; held: replica-hours within {COST_BOUND:.0%} and p95 within {P95_BOUND:.0%}"
    )
    print(f"{'':18}{'on Little-law means':^38}{'on the latency series (before)':^38}")
    print(f"{'scenario':18}" + f"{'replica-hours':>15}{'p95':>15}{'held':>8}" * 2)
    totals = [0, 0]
    for scenario in scenarios:
        cells = []
        for n, fitting in enumerate((fit, on_the_series)):
            figures = []
            for shift in SHIFTS:
                seen = measured(read[(shift, scenario.name)])  # as `whatif` replays it
                fitted = fitting(seen)
                assert fitted is not None, (scenario.name, shift)
                figures.append(off(fitted, seen, scenario))
            held = sum(abs(c) <= COST_BOUND and abs(p) <= P95_BOUND for c, p in figures)
            totals[n] += held
            costs, p95s = [c for c, _ in figures], [p for _, p in figures]
            cells.append(f"{span(costs):>15}{span(p95s):>15}{held:>5}/{len(SHIFTS)}")
        print(f"{scenario.name:18}" + "".join(cells))
    runs = len(scenarios) * len(SHIFTS)
    print(f"held in {totals[0]}/{runs} (Little-law means), {totals[1]}/{runs} (the series)")


if __name__ == "__main__":
    main()
