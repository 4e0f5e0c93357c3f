"""Choosing values by replay: the search over candidate values, with plain outcomes."""

from modelpilot.advisor.choose import Values, choose, ladder
from modelpilot.advisor.model import GOAL
from modelpilot.advisor.replay import Outcome


def result(replica_hours: float, attainment: float | None, events: float = 0.0) -> Outcome:
    return Outcome(
        replica_hours=replica_hours,
        latency_p50=None,
        latency_p95=None,
        latency_p99=None,
        attainment=attainment,
        cold_starts=0,
        scale_events_per_hour=events,
    )


def test_the_ladder_climbs_geometrically_to_the_rules_value() -> None:
    assert ladder(60, 3600) == [235, 920, 3600]
    assert ladder(8, 1) == [4, 2, 1]
    assert ladder(1, 3) == [2, 3]
    assert ladder(5, 2) == [4, 3, 2]
    assert ladder(0, 900) == [300, 600, 900]
    assert ladder(4, 4) == []
    assert ladder(300, 600, rungs=1) == [600]


def test_the_cheapest_value_that_meets_the_objective_wins() -> None:
    # minReplicas 1 -> 8 by the rule of thumb; 4 warm replicas already serve all in time.
    def simulate(values: Values) -> Outcome:
        warm = values.get("min_replicas", 1)
        return result(replica_hours=warm * 6.0, attainment=min(0.9 + 0.035 * warm, 1.0))

    chosen = choose([("min_replicas", 1, 8)], simulate)
    assert chosen is not None
    assert chosen.values == {"min_replicas": 4}  # of 2, 4, 8 (2 serves 97%)
    assert chosen.outcome.attainment is not None and chosen.outcome.attainment >= GOAL
    assert chosen.tried == 3  # 2, 4 and 8


def test_two_fixes_for_one_trouble_become_the_cheaper_one() -> None:
    # Either more warm replicas or a longer scale-down delay fixes the cold starts; the
    # delay costs less, and both together cost the most.
    def simulate(values: Values) -> Outcome:
        warm, delay = values.get("min_replicas", 1), values.get("scale_down_delay_seconds", 300)
        fixed = warm >= 4 or delay >= 1200
        return result(replica_hours=warm * 6.0 + delay / 300, attainment=0.995 if fixed else 0.8)

    chosen = choose([("min_replicas", 1, 8), ("scale_down_delay_seconds", 300, 2400)], simulate)
    assert chosen is not None
    assert chosen.values == {"scale_down_delay_seconds": 1200}
    assert chosen.tried == 4 * 4 - 1  # every pair but "change nothing"


def test_when_nothing_meets_the_goal_the_closest_wins() -> None:
    def simulate(values: Values) -> Outcome:
        top = values.get("max_replicas", 2)
        return result(replica_hours=top, attainment=min(0.5 + top * 0.05, 0.8))

    chosen = choose([("max_replicas", 2, 12)], simulate)
    assert chosen is not None
    # Of 4, 7 and 12: 80% is reached at 7, and 12 buys nothing more.
    assert chosen.values == {"max_replicas": 7}


def test_invalid_sets_are_skipped_and_no_objective_means_no_choice() -> None:
    def simulate(values: Values) -> Outcome | None:
        return None if values.get("min_replicas", 1) > 3 else result(0.9 if values else 1.0, 1.0)

    chosen = choose([("min_replicas", 1, 8)], simulate)
    assert chosen is not None and chosen.values == {"min_replicas": 2}
    assert choose([("min_replicas", 1, 8)], lambda _: result(1.0, None)) is None
    assert choose([("min_replicas", 1, 8)], lambda _: None) is None


def test_within_the_objective_already_only_a_change_that_costs_no_more_is_chosen() -> None:
    # A longer delay would cut scale events, but the objective is met and it costs more.
    def costlier(values: Values) -> Outcome:
        delay = values.get("scale_down_delay_seconds", 60)
        return result(replica_hours=10 + delay / 600, attainment=0.995, events=3600 / delay)

    chosen = choose([("scale_down_delay_seconds", 60, 1200)], costlier)
    assert chosen is not None and chosen.values == {} and chosen.outcome.replica_hours == 10.1

    # Fewer warm replicas cost less and still meet it: that one is worth making.
    def spare(values: Values) -> Outcome:
        warm = values.get("min_replicas", 6)
        return result(replica_hours=warm * 6.0, attainment=0.995 if warm >= 2 else 0.9)

    chosen = choose([("min_replicas", 6, 1)], spare)
    assert chosen is not None and chosen.values == {"min_replicas": 2}


def test_within_the_objective_a_saving_inside_the_replays_error_is_not_worth_a_change() -> None:
    # 1% fewer replica-hours is within what a replay misses by: not worth the risk.
    def marginal(values: Values) -> Outcome:
        return result(replica_hours=9.9 if values else 10.0, attainment=0.995)

    chosen = choose([("scale_down_delay_seconds", 900, 1800)], marginal)
    assert chosen is not None and chosen.values == {}


def test_short_of_the_objective_a_change_that_buys_nothing_is_not_made() -> None:
    # A longer delay, replayed: no better in time and dearer. Diagnosed, but no fix.
    def dearer(values: Values) -> Outcome:
        delay = values.get("scale_down_delay_seconds", 900)
        return result(replica_hours=10 + delay / 900, attainment=0.95 - delay / 100_000)

    chosen = choose([("scale_down_delay_seconds", 900, 3600)], dearer)
    assert chosen is not None and chosen.values == {}
    assert chosen.outcome.replica_hours == 11.0  # the settings in force, replayed


def test_short_of_the_objective_a_gain_inside_the_replays_error_is_not_bought() -> None:
    # Each longer delay buys 0.3 points in time, at a cost: within what a replay misses by.
    def creeping(values: Values) -> Outcome:
        delay = values.get("scale_down_delay_seconds", 3600)
        return result(replica_hours=20 + delay / 3600, attainment=0.97 + delay / 1_200_000)

    chosen = choose([("scale_down_delay_seconds", 3600, 5715)], creeping)
    assert chosen is not None and chosen.values == {}
