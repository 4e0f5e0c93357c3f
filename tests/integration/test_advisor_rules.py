"""The advisor on ModelPilot's recording rules: a real Prometheus holding six hours of each
scenario's contract series, first without the rules, then with them recording for only part
of the lookback, then for all of it (backfilled with `promtool tsdb create-blocks-from
rules`, which evaluates them as Prometheus would, at the group's own offset). Read from the
rules, every signal is what the raw series give at the same instants, and every scenario
gets its diagnosis."""

import asyncio
import time
from pathlib import Path

from prometheus_api_client import PrometheusConnect

from modelpilot.advisor import source
from modelpilot.advisor.model import History, Objective
from modelpilot.devcluster.prometheus import (
    PrometheusServer,
    backfill,
    backfill_rules,
    recording_rules,
)
from modelpilot.devcluster.scenarios import catalogue

from .test_advisor import NAMESPACE, SIX_HOURS, assert_diagnosed, scenario_history

RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheusrule.yaml"
STEP = 60
LOOKBACK = SIX_HOURS - 1800  # the rules' backfill starts with the history: leave it a margin
RECORDED = ("concurrency", "rps", "errors", "latency", "active", "starting", "desired")


def read(
    server: PrometheusServer, end: float, percentile: int = 95, step: int = STEP
) -> source.Fetched:
    prom = PrometheusConnect(url=server.url, disable_ssl=True)
    objectives = {(NAMESPACE, s.name): Objective(percentile=percentile) for s in catalogue()}
    return asyncio.run(source.fetch(prom, objectives, LOOKBACK, step, end))


def raw_at(server: PrometheusServer, times: list[float], percentile: int) -> dict:
    """The raw queries (no rules) evaluated at exactly `times`."""
    prom = PrometheusConnect(url=server.url, disable_ssl=True)
    kind = ("EndToEnd", percentile)
    wanted = source.queries(STEP, [kind])
    results = {
        name: source.range_query(prom, query, times[0], times[-1], STEP)
        for name, query in wanted.items()
    }
    kinds = {(NAMESPACE, s.name): kind for s in catalogue()}
    return source.assemble(results, times, STEP, kinds)  # type: ignore[arg-type]


def differ(a: History, b: History) -> list[str]:
    """The recorded signals on which two histories differ beyond float noise."""
    out = []
    for name in RECORDED:
        for i, (x, y) in enumerate(zip(getattr(a, name), getattr(b, name), strict=True)):
            if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6 * (1 + abs(x))):
                near = slice(max(0, i - 2), i + 3)  # the neighbours tell a shift from noise
                out.append(
                    f"{name}: {x} != {y} at point {i} of {len(a.times)} "
                    f"({getattr(a, name)[near]} vs {getattr(b, name)[near]})"
                )
                break
    return out


def test_the_advisor_reads_the_rules_once_they_cover_its_lookback(tmp_path: Path) -> None:
    end = time.time() - 60
    server = PrometheusServer(tmp_path / "prometheus")
    backfill(scenario_history(catalogue(), end), server.data_dir)
    server.start()
    try:
        raw = read(server, end)
        assert raw.read == source.FROM_RAW

        rule_file = recording_rules(RULES, tmp_path / "rules.yaml")
        # Recording for the last hour only: the lookback is not covered, raw it stays.
        backfill_rules(server, rule_file, end - 3600, end)
        assert read(server, end).read == source.FROM_RAW

        backfill_rules(server, rule_file, end - SIX_HOURS, end)
        recorded = read(server, end)
        assert recorded.read == source.FROM_RULES
        assert recorded.queries == raw.queries - 1  # no sharded quantile over the buckets
        assert len(recorded.histories) == len(catalogue())
        times = next(iter(recorded.histories.values())).times
        for percentile in (95, 97):  # p97 is not recorded: computed from the buckets
            fetched = recorded if percentile == 95 else read(server, end, percentile)
            assert fetched.read == source.FROM_RULES
            expected = raw_at(server, times, percentile)
            for key, history in fetched.histories.items():
                assert differ(expected[key], history) == [], (percentile, key)
        assert_diagnosed(recorded)

        # Another step reads another window, which the 2-minute rules do not record.
        assert read(server, end, step=30).read == source.FROM_RAW
    finally:
        server.stop()
