from datetime import UTC, datetime

import pytest

from modelpilot.times import about, clock, format_duration, format_time, parse_duration, parse_time


def test_timestamps_round_trip() -> None:
    t = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)
    assert format_time(t) == "2026-06-01T12:00:05Z"
    assert parse_time("2026-06-01T12:00:05Z") == t
    assert parse_time(None) is None and parse_time("") is None
    assert parse_time("yesterday") is None  # status is user-writable


@pytest.mark.parametrize(
    ("text", "seconds"), [("6h", 21600), ("90m", 5400), ("1d", 86400), ("3600s", 3600), ("45", 45)]
)
def test_durations_parse_and_format(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


def test_durations() -> None:
    assert [format_duration(s) for s in (21600, 150, 5400, 0)] == ["6h", "150s", "90m", "0s"]
    with pytest.raises(ValueError, match="not a duration like 6h"):
        parse_duration("soon")
    assert [about(s) for s in (45, 600, 7200)] == ["45s", "10 min", "2 h"]
    assert clock(125.7) == "02:05"
