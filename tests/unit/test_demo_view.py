"""The demo's output: the live view, the traffic pattern and the before/after comparison."""

from modelpilot.demo.traffic import Outcome, Pattern
from modelpilot.demo.view import (
    WIDTH,
    Frame,
    ScaleEvent,
    comparison,
    period_stats,
    recommendation_lines,
    render,
    sparkline,
)

REC = {
    "setting": "scaleDownDelaySeconds",
    "current": 10,
    "recommended": 60,
    "reason": "PrematureScaleDown",
    "message": "3 scale-downs were followed by a scale-up within 15s: replicas were removed "
    "too early. Raise scaleDownDelaySeconds to 60. " * 2,
    "evidence": {"downToUpGapsSeconds": [10, 15, 5], "currentDelaySeconds": 10},
    "confidence": 0.8,
}
STATUS = {
    "replicas": {"desired": 4, "active": 3, "starting": 1, "terminating": 0},
    "pods": {"ready": 3, "notReady": 1, "unknown": 0},
    "restarts": {"total": 2},
    "autoscaling": {"effective": {"minReplicas": 1, "scaleDownDelaySeconds": 20}},
    "advisor": {
        "recommendations": [REC],
        "history": [
            {"time": "t1", "message": "applied scaleDownDelaySeconds 10 -> 20"},
            {"time": "t2", "message": "reverted", "reverted": True},
        ],
    },
}


def test_pattern_alternates_bursts_and_quiet_spells() -> None:
    p = Pattern(burst_rps=40, quiet_rps=3, burst_seconds=20, quiet_seconds=25)
    assert [p.rate(t) for t in (0, 19.9, 20, 44.9, 45)] == [40, 40, 3, 3, 40]


def test_live_view_fits_100_columns_and_shows_what_matters() -> None:
    frame = Frame(
        model="demo/sample-chat",
        phase="Auto",
        elapsed=130,
        total=480,
        pattern=Pattern().describe(),
        status=STATUS,
        rps={"2xx": 38.5, "4xx": 0.8},
        p50=0.243,
        p95=None,
        concurrency=7.25,
        ttft_p95=0.31,
        tokens={"input": 41.0, "output": 150.4},
        scale_events=[ScaleEvent(100, 3, 4)],
        replicas_trend=[1, 4, 5, None, 3] * 50,
        p95_trend=[0.2, 8.0],
    )
    lines = render(frame)
    text = "\n".join(lines)
    assert all(len(line) <= WIDTH for line in lines)
    assert "desired 4   active 3   starting 1" in text
    assert "not ready 1" in text and "restarts 2" in text
    assert "2xx 38.5/s   4xx 0.8/s   5xx 0.0/s" in text
    assert "p50 243 ms   p95 ?" in text  # unknown, not 0
    assert "TTFT p95 310 ms   in 41/s   out 150/s" in text
    assert "last 00:30 ago (3 -> 4)" in text
    assert "PrematureScaleDown: scaleDownDelaySeconds 10 -> 60" in text
    assert "evidence: downToUpGapsSeconds=[10, 15, 5]" in text
    assert "applied scaleDownDelaySeconds 10 -> 20" in text and "reverted" not in text


def test_no_meter_series_reads_unknown() -> None:
    frame = Frame("m", "Recommend", 0, 60, "p", status={})
    text = "\n".join(render(frame))
    assert "? (no meter series yet)" in text and "desired ?" in text
    assert "TTFT p95 ?   tokens/s ?" in text


def test_recommendation_wraps_inside_the_width() -> None:
    lines = recommendation_lines(REC)
    assert len(lines) > 3 and all(len(line) <= WIDTH for line in lines)


def test_sparkline_scales_and_marks_gaps() -> None:
    assert sparkline([1, 2, None, 8], 10) == "▁▂·█"
    assert sparkline([None, None], 10) == "··"
    assert len(sparkline(list(range(500)), 80)) == 80


def test_period_stats_and_comparison() -> None:
    outcomes = [Outcome(t, 0.1 * (t % 10 + 1), "2xx") for t in range(100)]
    outcomes += [Outcome(50, 0.0, "error"), Outcome(51, 0.2, "5xx")]
    events = [ScaleEvent(10, 1, 3), ScaleEvent(70, 3, 2)]
    before = period_stats(outcomes, events, 0, 60)
    assert (before.requests, before.failed, before.scale_events) == (62, 2, 1)
    assert before.p95 is not None and abs(before.p95 - 1.0) < 1e-9
    assert before.events_per_minute == 1.0
    empty = period_stats([], [], 0, 0)
    assert empty.p95 is None and empty.events_per_minute is None
    table = comparison([("before Auto", before), ("after", empty), ("since", before)])
    assert "before Auto" in table[0] and all(len(row) <= WIDTH for row in table)
    assert any("p95 latency" in row and "1,000 ms        " in row and "?" in row for row in table)


def test_long_lines_wrap_and_a_silent_advisor_says_why() -> None:
    message = "applied scaleDownDelaySeconds 10 -> 20 (PrematureScaleDown; recommended 60, " * 2
    status = {
        "conditions": [
            {"type": "MetricsAvailable", "message": "36 points; judging the last change"}
        ],
        "advisor": {"recommendations": [], "history": [{"time": "t", "message": message}]},
    }
    lines = render(Frame("m", "Auto", 0, 60, "p", status=status))
    assert all(len(line) <= WIDTH for line in lines)
    text = " ".join(line.strip() for line in lines)
    assert message.strip() in text  # wrapped, not cut
    assert "judging the last change" in text
