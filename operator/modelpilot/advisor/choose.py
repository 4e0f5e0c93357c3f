"""Values chosen by replay (pure). The rules say which settings to change and how far a rule
of thumb would take each; replaying the model's own traffic under values in between says how
far is enough. The cheapest set that keeps GOAL of the busy points within the objective wins
or, when none does, the set that comes closest. Settings are tried together, so two
recommendations that fix the same trouble (more warm replicas and a longer scale-down delay
for a bursty model) become the one that costs less."""

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from modelpilot.advisor.model import GOAL
from modelpilot.advisor.replay import Outcome
from modelpilot.settings import Setting

MIN_SAVING = 0.02  # of replica-hours: a change for less when within the objective
MIN_GAIN = 0.01  # of busy points in time: a change for more when short of it
RUNGS = 3  # values tried per setting between the current one and the rule's (that one included)
# With three or more settings at once only the rule's value is tried beside the current one:
# a grid of 4^3 replays per model would cost more than the advice is worth.
FEW_RUNGS = 1

Values = Mapping[Setting, int]
Simulate = Callable[[Values], Outcome | None]  # None: not a valid set of settings


def ladder(current: int, suggested: int, rungs: int = RUNGS) -> list[int]:
    """Up to `rungs` values from just past `current` to `suggested` (always included),
    spaced geometrically: a delay of 60 s toward 3600 s tries 235, 920 and 3600."""
    if suggested == current:
        return []
    step = 1 if suggested > current else -1
    if abs(suggested - current) <= rungs:
        return list(range(current + step, suggested + step, step))
    if current > 0 and suggested > 0:
        ratio = (suggested / current) ** (1 / rungs)
        raw = [round(current * ratio**i) for i in range(1, rungs)]
    else:  # from or to 0: evenly spaced
        raw = [round(current + (suggested - current) * i / rungs) for i in range(1, rungs)]
    values: list[int] = []
    for value in [*raw, suggested]:
        if value != current and (not values or (value - values[-1]) * step > 0):
            values.append(value)
    return values


@dataclass(frozen=True)
class Choice:
    values: dict[Setting, int]  # the settings that change, and to what (empty: none pays)
    outcome: Outcome
    tried: int  # sets of values replayed


def choose(
    suggested: Sequence[tuple[Setting, int, int]],
    simulate: Simulate,
    seen_within: bool | None = None,
) -> Choice | None:
    """The cheapest change (setting, current, suggested triples in) that meets the goal, or
    the closest to it. When the settings in force already meet it, only a change that saves
    MIN_SAVING of their replica-hours is chosen; short of it, only one that costs less or
    gains MIN_GAIN in time; else none (`values` empty: nothing to recommend). None when the
    replays cannot judge the objective (no busy points or no objective), or no candidate
    set is valid. `seen_within`: whether the history itself met the goal (None: unknown,
    the replay says). A replay that says the settings in force are fine while they were seen
    not to be is not believed, nor one a little off the goal where they were seen to meet
    it (which would buy a dearer change)."""
    rungs = RUNGS if len(suggested) < 3 else FEW_RUNGS
    options = [
        [(setting, current), *((setting, v) for v in ladder(current, target, rungs))]
        for setting, current, target in suggested
    ]
    current = {setting: value for setting, value, _ in suggested}
    tried: list[tuple[dict[Setting, int], Outcome]] = []
    for combination in itertools.product(*options):
        changed = {s: v for s, v in combination if v != current[s]}
        if not changed:
            continue  # something was diagnosed: doing nothing is not a choice
        result = simulate(changed)
        if result is None:
            continue
        if result.attainment is None:
            return None
        tried.append((changed, result))
    if not tried:
        return None
    count = len(tried)
    now = simulate({})
    within = (now.attainment or 0.0) >= GOAL if seen_within is None and now else seen_within
    if within and now is not None:
        # Already within the objective: only a change that saves (more than the replay's
        # own error on cost) and serves as well as the replay says the settings in force do
        # is worth making.
        floor = min(GOAL, now.attainment or 0.0)
        cheaper = [
            (c, r)
            for c, r in tried
            if (r.attainment or 0.0) >= floor
            and r.replica_hours <= now.replica_hours * (1 - MIN_SAVING) + 1e-9
        ]
        if not cheaper:
            return Choice(values={}, outcome=now, tried=count)
        tried = cheaper
    elif now is not None and (now.attainment or 0.0) < GOAL:
        # Short of it, and so replayed: a change that serves no better and costs no less
        # is no fix. (Where the replay says the settings in force are fine while they were
        # seen not to be, its figure for them is no yardstick.)
        replayed = now.attainment or 0.0
        useful = [
            (c, r)
            for c, r in tried
            if (r.attainment or 0.0) >= replayed + MIN_GAIN
            or r.replica_hours < now.replica_hours - 1e-9
        ]
        if not useful:
            return Choice(values={}, outcome=now, tried=count)
        tried = useful
    goal = min(GOAL, max(r.attainment or 0.0 for _, r in tried))
    meeting = [(c, r) for c, r in tried if (r.attainment or 0.0) >= goal - 1e-9]
    values, result = min(
        meeting,
        key=lambda cr: (round(cr[1].replica_hours, 3), len(cr[0]), cr[1].scale_events_per_hour),
    )
    return Choice(values=values, outcome=result, tried=count)
