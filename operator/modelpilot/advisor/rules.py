"""The nine diagnoses. Each reads a model's history and its effective settings and
returns a Recommendation with a concrete value derived from the data, or None.

Conventions: "replicas" is active + starting (the pods a Deployment keeps); latency is the
end-to-end latency at the objective percentile; "degraded" means over the objective (or,
without one, well over the model's own quiet-period baseline). Points with no data are
skipped, never read as zero.
"""

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelpilot.advisor.model import (
    GOAL,
    Evidence,
    History,
    Objective,
    Reason,
    Recommendation,
    Series,
)
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.times import about

MIN_POINTS = 20


def _known(values: Series) -> list[float]:
    return [v for v in values if v is not None]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    return ranked(sorted(values), q)


def ranked(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty sorted sequence (several of one sort)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def median_line(pairs: Sequence[tuple[float, float]], enough: int) -> tuple[float, float] | None:
    """(level, slope) of y against a load per replica x: the median y up to one request per
    replica, and the median of each point's slope from that level above 1.2; None with fewer
    than `enough` points on either side. Where latency lags concurrency (a backlog draining,
    replicas becoming active between two points) points sit far off any line and drag a
    least-squares fit; medians ignore them."""
    light = [y for x, y in pairs if x <= 1]
    if len(light) < enough:
        return None
    level = statistics.median(light)
    slopes = [(y - level) / (x - 1) for x, y in pairs if x >= 1.2]
    if len(slopes) < enough:
        return None
    return level, statistics.median(slopes)


def came_up(active: Series, within: int = 2) -> list[bool]:
    """Whether replicas came up (became active) at each point or the `within` before it. A
    backlog stays on the replicas it queued on, so it drains there after new replicas come
    up: answers stay slow a while, and the load per replica is then an average over
    replicas that carry very different loads."""
    out, last, since = [], None, within + 1
    for a in active:
        since = 0 if a is not None and last is not None and a > last else since + 1
        last = a if a is not None else last
        out.append(since <= within)
    return out


def _round_up(value: float, unit: int) -> int:
    return int(math.ceil(value / unit) * unit)


@dataclass
class Context:
    """A model's history with the derived series the rules share."""

    history: History
    settings: AutoscalingSpec
    objective: Objective
    threshold: float  # latency above this is degraded (seconds)
    baseline: float  # latency when replicas carry the least load (seconds)
    replicas: Series = field(default_factory=list)
    per_replica: Series = field(default_factory=list)  # concurrency per active replica
    zero_available: bool = False  # the activator is installed: minReplicas 0 is possible

    @property
    def capacity(self) -> float:
        """Concurrency one replica is meant to carry: target x utilization."""
        s = self.settings
        return s.concurrency_target * s.target_utilization_percentage / 100

    @property
    def step(self) -> float:
        return self.history.step

    def degraded(self, i: int) -> bool | None:
        latency = self.history.latency[i]
        return None if latency is None else latency > self.threshold

    def explains(self, slow: int) -> float:
        """When `slow` points (those a rule explains) alone miss an objective the user set,
        more of the measured points than its goal allows, the share of all slow points they
        are; else 0. Trouble too brief for a rule's own bar still counts then (the replay
        says whether the rule's fix would help), the surer the more of it the rule explains."""
        latency = _known(self.history.latency)
        if self.objective.seconds is None or slow <= (1 - GOAL) * len(latency):
            return 0.0
        return slow / max(sum(v > self.threshold for v in latency), slow)

    def scale_events(self) -> list[tuple[int, int]]:
        """(index, +1 | -1) wherever the replica count changed."""
        events, last = [], None
        for i, value in enumerate(self.replicas):
            if value is None:
                continue
            if last is not None and value != last:
                events.append((i, 1 if value > last else -1))
            last = value
        return events

    def down_up_gaps(self) -> list[float]:
        """Seconds from each scale-down to the next scale-up."""
        events = self.scale_events()
        gaps = []
        for n, (i, direction) in enumerate(events):
            if direction < 0:
                nxt = next((j for j, d in events[n + 1 :] if d > 0), None)
                if nxt is not None:
                    gaps.append((nxt - i) * self.step)
        return gaps


def build_context(
    history: History, settings: AutoscalingSpec, objective: Objective, zero_available: bool = False
) -> Context:
    h = history
    replicas: Series = [
        a + (s or 0) if a is not None else None for a, s in zip(h.active, h.starting, strict=True)
    ]
    per_replica: Series = [
        c / a if c is not None and a else None for c, a in zip(h.concurrency, h.active, strict=True)
    ]
    baseline = _baseline(h, per_replica)
    threshold = (
        objective.seconds if objective.seconds is not None else max(baseline * 1.5, baseline + 0.05)
    )
    return Context(
        h, settings, objective, threshold, baseline, replicas, per_replica, zero_available
    )


def _baseline(h: History, per_replica: Series) -> float:
    """The model's quiet latency: median latency when each replica carried the least
    (the lowest fifth of per-replica load)."""
    pairs = [
        (c, lat)
        for c, lat in zip(per_replica, h.latency, strict=True)
        if c is not None and lat is not None
    ]
    if not pairs:
        return math.inf
    cut = percentile([c for c, _ in pairs], 20)
    return statistics.median(lat for c, lat in pairs if c <= cut)


KV_CACHE_FULL = 0.9


def _value(values: Series, i: int) -> float | None:
    return values[i] if i < len(values) else None  # a series not fetched is shorter


def _at(values: Series, points: list[int]) -> list[float]:
    return _known([_value(values, i) for i in points])


@dataclass
class Engine:
    """What the serving engine itself said at some points, when it is scraped."""

    evidence: dict[str, Evidence]
    saturated: float | None  # share of those points with a full KV cache or a queue

    def clause(self) -> str:
        if not self.saturated:
            return ""
        return (
            f" The engine itself was saturated {self.saturated * 100:.0f}% of that time (KV "
            f"cache {KV_CACHE_FULL * 100:.0f}%+ full or requests waiting inside it)."
        )


def engine_at(ctx: Context, points: list[int]) -> Engine:
    """vLLM/SGLang/TGI's waiting requests and KV-cache use at `points`; absent, nothing."""
    h = ctx.history
    kv, waiting = _at(h.kv_cache, points), _at(h.engine_queue, points)
    evidence: dict[str, Evidence] = {}
    if kv:
        evidence["kvCacheUsageP95"] = round(percentile(kv, 95), 3)
    if waiting:
        evidence["engineQueueP95"] = round(percentile(waiting, 95), 2)
    flags = []
    for i in points:
        kv_i, waiting_i = _value(h.kv_cache, i), _value(h.engine_queue, i)
        if kv_i is not None or waiting_i is not None:
            flags.append((kv_i or 0) >= KV_CACHE_FULL or (waiting_i or 0) >= 1)
    saturated = round(sum(flags) / len(flags), 2) if flags else None
    if saturated is not None:
        evidence["engineSaturatedShare"] = saturated
    return Engine(evidence, saturated)


def _delay_for(ctx: Context, gaps: list[float]) -> int:
    """A scale-down delay longer than the quiet spells seen: a spell lasted the current
    delay plus the gap until load came back."""
    current = ctx.settings.scale_down_delay_seconds
    spells = [current + g for g in gaps]
    return min(max(_round_up(max(spells) * 1.2, 60), current * 2, 60), 86400)


def thrash(ctx: Context) -> Recommendation | None:
    events = ctx.scale_events()
    reversals = sum(1 for (_, a), (_, b) in itertools.pairwise(events) if a != b)
    hours = len(ctx.history.times) * ctx.step / 3600
    if reversals < 4 or reversals / hours < 1:
        return None
    # Around each change, while the replicas it started were not serving yet, and just
    # after they came up: requests that queued for a replica answer late until it is up and
    # its backlog drained, however long it takes to start.
    starting = [i for i, s in enumerate(ctx.history.starting) if s]
    drained = [i for i, up in enumerate(came_up(ctx.history.active)) if up]
    near = {j for i, _ in events for j in range(i - 2, i + 3)} | set(starting) | set(drained)
    close = _known([ctx.history.latency[i] for i in near if 0 <= i < len(ctx.replicas)])
    away = _known([v for i, v in enumerate(ctx.history.latency) if i not in near])
    if len(close) < 3 or len(away) < 3:
        return None
    # fmean: statistics.mean sums exactly, in fractions, at half a millisecond a call.
    near_mean, away_mean = statistics.fmean(close), statistics.fmean(away)
    ratio = near_mean / max(away_mean, 1e-9)
    if ratio < 1.3:
        return None
    gaps = ctx.down_up_gaps() or [ctx.settings.scale_down_delay_seconds]
    value = _delay_for(ctx, gaps)
    return Recommendation(
        setting="scale_down_delay_seconds",
        current=ctx.settings.scale_down_delay_seconds,
        recommended=value,
        reason="Thrash",
        message=(
            f"Replicas went up and down {reversals} times in {hours:.1f}h and latency "
            f"around those changes was {ratio:.1f}x the rest: raise "
            f"scaleDownDelaySeconds to {value} so quiet spells of up to "
            f"{about(value / 1.2)} do not remove replicas that are needed again."
        ),
        evidence={
            "reversals": reversals,
            "scaleEvents": len(events),
            "latencyNearChangesSeconds": round(near_mean, 3),
            "latencyElsewhereSeconds": round(away_mean, 3),
            "downToUpGapsSeconds": [round(g) for g in gaps[:10]],
        },
        confidence=round(min(0.95, 0.6 + 0.04 * reversals + 0.1 * (ratio - 1.3)), 2),
    )


def premature_scale_down(ctx: Context) -> Recommendation | None:
    window = max(600.0, ctx.settings.scale_down_delay_seconds)
    gaps = [g for g in ctx.down_up_gaps() if g <= window]
    if len(gaps) < 2:
        return None
    value = _delay_for(ctx, gaps)
    return Recommendation(
        setting="scale_down_delay_seconds",
        current=ctx.settings.scale_down_delay_seconds,
        recommended=value,
        reason="PrematureScaleDown",
        message=(
            f"{len(gaps)} scale-downs were followed by a scale-up within "
            f"{about(max(gaps))}: replicas were removed too early. Raise "
            f"scaleDownDelaySeconds to {value}."
        ),
        evidence={
            "downToUpGapsSeconds": [round(g) for g in gaps[:10]],
            "currentDelaySeconds": ctx.settings.scale_down_delay_seconds,
        },
        confidence=round(min(0.9, 0.5 + 0.1 * len(gaps)), 2),
    )


def capacity_exhausted(ctx: Context) -> Recommendation | None:
    s = ctx.settings
    # At max with every replica serving: slowness while replicas start is a cold start.
    pinned = [
        i
        for i, r in enumerate(ctx.replicas)
        if r is not None and r >= s.max_replicas and not ctx.history.starting[i]
    ]
    known = [r for r in ctx.replicas if r is not None]
    if not known or len(pinned) / len(known) < 0.15 or len(pinned) * ctx.step < 600:
        return None
    states = [d for d in (ctx.degraded(i) for i in pinned) if d is not None]
    # Slow for 30% of the pinned time, or for half an hour in all: a model pinned at max
    # all day and slow in every burst is short of capacity even if the bursts are short.
    # Or slow while pinned for more of the time than the objective's goal allows.
    explained = ctx.explains(sum(states))
    if not states or (
        sum(states) / len(states) < 0.3 and sum(states) * ctx.step < 1800 and not explained
    ):
        return None
    peak = percentile(_known([ctx.history.concurrency[i] for i in pinned]), 95)
    # Saturated replicas queue requests, which inflates concurrency: size the need by the
    # arrivals at the model's quiet latency instead (the raw peak stays in the evidence).
    arrivals = percentile(_known([ctx.history.rps[i] for i in pinned]) or [0.0], 95)
    demand = min(peak, arrivals * ctx.baseline) if arrivals else peak
    needed = math.ceil(demand / ctx.capacity)
    value = max(s.max_replicas + 1, math.ceil(needed * 1.2))
    latency = _known([ctx.history.latency[i] for i in pinned])
    engine = engine_at(ctx, pinned)
    return Recommendation(
        setting="max_replicas",
        current=s.max_replicas,
        recommended=value,
        reason="CapacityExhausted",
        message=(
            f"Replicas sat at maxReplicas ({s.max_replicas}) for "
            f"{about(len(pinned) * ctx.step)} while latency stayed over "
            f"{ctx.threshold * 1000:.0f} ms: peak demand {demand:.1f} needs {needed} "
            f"replicas at {ctx.capacity:g} each. Raise maxReplicas to {value} (20% "
            "headroom), or raise concurrencyTarget if the model has headroom." + engine.clause()
        ),
        evidence={
            "pinnedSeconds": round(len(pinned) * ctx.step),
            "peakConcurrency": round(peak, 2),
            "peakRequestsPerSecond": round(arrivals, 2),
            "peakDemand": round(demand, 2),
            "perReplicaCapacity": ctx.capacity,
            "latencyWhilePinnedSeconds": round(statistics.median(latency), 3),
            "latencyThresholdSeconds": round(ctx.threshold, 3),
            **engine.evidence,
        },
        confidence=round(
            min(
                0.95,
                0.5
                + max(sum(states) / len(states) / 2, explained / 4)
                + 0.1 * (engine.saturated or 0),
            ),
            2,
        ),
    )


def _episodes(mask: list[bool]) -> list[tuple[int, int]]:
    """[start, end) runs where mask is true."""
    runs, start = [], None
    for i, flag in enumerate([*mask, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def cold_starts(ctx: Context) -> Recommendation | None:
    s = ctx.settings
    starting = [(v or 0) > 0 for v in ctx.history.starting]
    episodes = [(a, b) for a, b in _episodes(starting) if (b - a) * ctx.step >= 120]
    if len(episodes) < 2:
        return None
    inside = [i for a, b in episodes for i in range(a, b)]
    outside = [i for i in range(len(starting)) if not starting[i]]
    lat_in = _known([ctx.history.latency[i] for i in inside])
    lat_out = _known([ctx.history.latency[i] for i in outside])
    if len(lat_in) < 3:
        return None
    bad_in = sum(v > ctx.threshold for v in lat_in) / len(lat_in)
    ratio = statistics.median(lat_in) / max(statistics.median(lat_out), 1e-9) if lat_out else 0
    if bad_in < 0.3 and ratio < 1.5:
        return None
    # The load that arrived meanwhile, at the model's quiet latency: waiting requests
    # inflate concurrency during a cold start, so it is not the measure.
    arrivals = percentile(_known([ctx.history.rps[i] for i in inside]) or [0.0], 90)
    load = arrivals * ctx.baseline
    value = min(max(math.ceil(load / ctx.capacity), s.min_replicas + 1), s.max_replicas)
    if value <= s.min_replicas:
        return None
    durations = [(b - a) * ctx.step for a, b in episodes]
    return Recommendation(
        setting="min_replicas",
        current=s.min_replicas,
        recommended=value,
        reason="ColdStarts",
        message=(
            f"{len(episodes)} times replicas took {about(statistics.median(durations))} "
            f"(median) to become ready, and latency meanwhile was "
            f"{statistics.median(lat_in) * 1000:.0f} ms. Keep {value} replicas warm "
            f"(the load seen while replicas started), and look at image size and model "
            f"load time."
        ),
        evidence={
            "startingEpisodes": len(episodes),
            "medianStartingSeconds": round(statistics.median(durations)),
            "latencyWhileStartingSeconds": round(statistics.median(lat_in), 3),
            "latencyOtherwiseSeconds": round(statistics.median(lat_out), 3)
            if lat_out
            else "unknown",
            "requestsPerSecondWhileStartingP90": round(arrivals, 2),
            "quietLatencySeconds": round(ctx.baseline, 3),
            "demandWhileStarting": round(load, 2),
        },
        confidence=round(min(0.9, 0.5 + 0.1 * len(episodes)), 2),
    )


def _latency_by_load(ctx: Context) -> dict[int, float]:
    """Median latency by per-replica concurrency (whole requests), bins with 3+ points."""
    bins: dict[int, list[float]] = {}
    for c, lat in zip(ctx.per_replica, ctx.history.latency, strict=True):
        if c is not None and lat is not None:
            bins.setdefault(math.floor(c), []).append(lat)
    return {b: statistics.median(v) for b, v in sorted(bins.items()) if len(v) >= 3}


def concurrency_target_too_high(ctx: Context) -> Recommendation | None:
    s = ctx.settings
    busy = [i for i, c in enumerate(ctx.history.concurrency) if c and c > 0.5]
    states = [(i, ctx.degraded(i)) for i in busy]
    bad = [i for i, d in states if d]
    judged = [i for i, d in states if d is not None]
    if not judged:
        return None
    # The scaler was content (not at max, load per replica near its aim): the aim is wrong.
    aim = ctx.capacity * 1.25
    content = [
        i
        for i in bad
        if (ctx.replicas[i] or 0) < s.max_replicas and (ctx.per_replica[i] or 0) <= aim
    ]
    explained = ctx.explains(len(content))
    if len(bad) / len(judged) < 0.2 and not explained:
        return None
    if len(content) / len(bad) < 0.5:
        return None
    table = _latency_by_load(ctx)
    fine = [b for b, lat in table.items() if lat <= ctx.threshold and b > 0]
    ok_load = max(fine) if fine else 1
    value = max(1, math.floor(ok_load * 100 / s.target_utilization_percentage))
    if value >= s.concurrency_target:
        value = max(1, s.concurrency_target - 1)
    engine = engine_at(ctx, bad)
    return Recommendation(
        setting="concurrency_target",
        current=s.concurrency_target,
        recommended=value,
        reason="ConcurrencyTargetTooHigh",
        message=(
            f"Latency was over {ctx.threshold * 1000:.0f} ms {len(bad) * 100 // len(judged)}"
            f"% of the busy time while replicas stayed below max and each carried about "
            f"its target: the model meets the objective up to {ok_load} concurrent "
            f"requests per replica. Lower concurrencyTarget to {value}." + engine.clause()
        ),
        evidence={
            "degradedShare": round(len(bad) / len(judged), 2),
            "latencyByPerReplicaConcurrency": {str(k): round(v, 3) for k, v in table.items()},
            "highestConcurrencyMeetingObjective": ok_load,
            "latencyThresholdSeconds": round(ctx.threshold, 3),
            **engine.evidence,
        },
        confidence=round(
            min(
                0.9,
                0.4
                + max(len(bad) / len(judged) / 2, explained / 4)
                + (0.1 if fine else 0)
                + 0.1 * (engine.saturated or 0),
            ),
            2,
        ),
    )


# How much higher a target the rule of thumb tries at most: the replay (advisor.choose)
# picks the cheapest value up to it that still meets the objective.
LOW_TARGET_FACTOR = 4
# ... and no further than this many times the load per replica seen well served: past
# that the replay would extrapolate the service curve too far to trust.
LOW_TARGET_REACH = 2
LOW_TARGET_MARGIN = 0.8  # "well within" the objective: latency under this share of it


def _load_within(ctx: Context, latency: float) -> float | None:
    """The load per replica at which the latency series would reach `latency`, on its
    `median_line`; None when the history does not show the line or it does not rise."""
    line = median_line(
        [
            (x, lat)
            for x, lat in zip(ctx.per_replica, ctx.history.latency, strict=True)
            if x is not None and lat is not None
        ],
        MIN_POINTS,
    )
    if line is None or line[1] <= 0:
        return None
    level, slope = line
    return 1 + max(latency - level, 0.0) / slope


def concurrency_target_too_low(ctx: Context) -> Recommendation | None:
    """Replicas added for a target the model did not need: wherever the scaler ran more
    than the minimum, every replica serving, latency stayed well within the objective
    while each carried about its target. A higher target serves the same load with fewer
    replicas; how much higher still meets the objective is the replay's to say."""
    s = ctx.settings
    # Only against an objective the user set: one derived from the latency seen would
    # call any steady latency "well within" it, and trading latency for replicas is the
    # user's call.
    if ctx.objective.seconds is None or s.max_replicas <= max(s.min_replicas, 1):
        return None
    busy = [i for i, c in enumerate(ctx.history.concurrency) if c and c > 0.5]
    scaled = [
        i
        for i in busy
        if (ctx.replicas[i] or 0) > s.min_replicas
        and not ctx.history.starting[i]
        and ctx.history.latency[i] is not None
        and ctx.per_replica[i] is not None
    ]
    if len(scaled) < MIN_POINTS or len(scaled) < 0.1 * len(busy):
        return None
    fast = [
        i for i in scaled if (ctx.history.latency[i] or 0.0) <= LOW_TARGET_MARGIN * ctx.threshold
    ]
    half = 0.5 * ctx.capacity
    carried = [i for i in scaled if (ctx.per_replica[i] or 0.0) >= half]
    if len(fast) < 0.95 * len(scaled) or len(carried) < 0.5 * len(scaled):
        return None
    # Only as far as the history shows the model fast: the load per replica it carried
    # within the margin (a replay past that would extrapolate the service curve).
    loads = [
        ctx.per_replica[i] or 0.0
        for i in busy
        if ctx.per_replica[i] is not None
        and ctx.history.latency[i] is not None
        and (ctx.history.latency[i] or 0.0) <= LOW_TARGET_MARGIN * ctx.threshold
    ]
    ok_load = percentile(loads, 95)
    reach = LOW_TARGET_REACH * ok_load
    # ... and no further than the latency series' own line says the objective allows (the
    # margin is for what counts as fast; the replay judges the objective itself).
    headroom = _load_within(ctx, ctx.threshold)
    if headroom is not None:
        reach = min(reach, headroom)
    value = min(
        math.floor(reach * 100 / s.target_utilization_percentage),
        s.concurrency_target * LOW_TARGET_FACTOR,
    )
    if value <= s.concurrency_target:
        return None
    latency = percentile([ctx.history.latency[i] or 0.0 for i in scaled], 95)
    return Recommendation(
        setting="concurrency_target",
        current=s.concurrency_target,
        recommended=value,
        reason="ConcurrencyTargetTooLow",
        message=(
            f"Whenever the scaler ran more than minReplicas ({len(scaled)} points), each "
            f"replica carried about its target and latency stayed within "
            f"{latency * 1000:.0f} ms (p95), well inside the objective "
            f"({ctx.threshold * 1000:.0f} ms): those replicas were not needed. It stayed "
            f"that fast at {ok_load:.1f} concurrent requests per replica: raise "
            f"concurrencyTarget toward {value}."
        ),
        evidence={
            "scaledPoints": len(scaled),
            "latencyP95WhileScaledSeconds": round(latency, 3),
            "latencyThresholdSeconds": round(ctx.threshold, 3),
            "perReplicaConcurrencyWithinMargin": round(ok_load, 2),
            "perReplicaConcurrencyP50": round(
                percentile([ctx.per_replica[i] or 0.0 for i in scaled], 50), 2
            ),
        },
        confidence=round(min(0.8, 0.4 + len(scaled) / len(busy) / 2), 2),
    )


def _slope(values: list[tuple[float, float]]) -> float:
    n = len(values)
    mean_t = sum(t for t, _ in values) / n
    mean_v = sum(v for _, v in values) / n
    var = sum((t - mean_t) ** 2 for t, _ in values)
    return sum((t - mean_t) * (v - mean_v) for t, v in values) / var if var else 0.0


def async_backlog(ctx: Context) -> Recommendation | None:
    s = ctx.settings
    points = [
        (t, q) for t, q in zip(ctx.history.times, ctx.history.queue, strict=True) if q is not None
    ]
    if len(points) < MIN_POINTS:
        return None
    first, last = points[0][1], points[-1][1]
    if last < 10 or last < 2 * first + 1:
        return None  # no backlog worth a slope (every model's, at every evaluation)
    growth = _slope(points)  # requests per second
    if growth <= 0:
        return None
    per_replica = _known(
        [
            r / a if r is not None and a else None
            for r, a in zip(ctx.history.rps, ctx.history.active, strict=True)
        ]
    )
    throughput = statistics.median(per_replica) if per_replica else 0.0
    extra = max(1, math.ceil(growth / throughput)) if throughput > 0 else max(1, s.max_replicas)
    value = s.max_replicas + extra
    return Recommendation(
        setting="max_replicas",
        current=s.max_replicas,
        recommended=value,
        reason="AsyncBacklog",
        message=(
            f"The async queue grew from {first:.0f} to {last:.0f} (+{growth * 60:.1f} "
            f"per minute): requests arrive faster than they are served. At "
            f"{throughput:.2f} requests/s per replica, {extra} more replicas keep up: "
            f"raise maxReplicas to {value}."
        ),
        evidence={
            "queueStart": first,
            "queueEnd": last,
            "growthPerMinute": round(growth * 60, 2),
            "throughputPerReplica": round(throughput, 3),
        },
        confidence=round(min(0.9, 0.5 + min(last / 100, 0.4)), 2),
    )


def over_provisioned(ctx: Context) -> Recommendation | None:
    s = ctx.settings
    if s.min_replicas <= 1:
        return None
    pairs = [
        (c, r)
        for c, r in zip(ctx.history.concurrency, ctx.replicas, strict=True)
        if c is not None and r is not None and r > 0
    ]
    if len(pairs) < MIN_POINTS:
        return None
    quarter = 0.25 * ctx.capacity
    low = sum(1 for c, r in pairs if c / r < quarter) / len(pairs)
    above_min = sum(1 for _, r in pairs if r > 1) / len(pairs)
    if low < 0.8 or above_min < 0.8:
        return None
    if max(_known(ctx.history.queue) or [0.0]) > 1:
        return None  # replicas busy with async work are not idle
    needed = max(1, math.ceil(percentile([c for c, _ in pairs], 95) / ctx.capacity))
    if needed >= s.min_replicas:
        return None
    gpu = _known(ctx.history.gpu_utilization)
    evidence: dict[str, Evidence] = {
        "lowLoadShare": round(low, 2),
        "concurrencyP95": round(percentile([c for c, _ in pairs], 95), 2),
        "perReplicaCapacity": ctx.capacity,
        "replicasNeeded": needed,
    }
    if gpu:
        evidence["gpuUtilizationPercentMean"] = round(statistics.fmean(gpu), 1)
    return Recommendation(
        setting="min_replicas",
        current=s.min_replicas,
        recommended=needed,
        reason="OverProvisioned",
        message=(
            f"Each replica carried under a quarter of its target {low * 100:.0f}% of the "
            f"time: {needed} replicas cover the 95th percentile of demand. Lower "
            f"minReplicas to {needed} to free {s.min_replicas - needed} GPUs' worth of "
            "replicas."
        ),
        evidence=evidence,
        confidence=round(min(0.9, 0.4 + low / 2), 2),
    )


IDLE_SPELL_SECONDS = 1800  # a spell without requests worth having no replica for
COLD_SHARE_OF_SPELL = 0.05  # a cold start this short next to the median spell is cheap


def idle_replicas(ctx: Context) -> Recommendation | None:
    """Replicas kept warm through long spells without a single request. With the activator
    installed, 0 would cost nothing then, the first request after each spell waiting one
    (measured) cold start; whether the objective allows that is for the replay to say."""
    s = ctx.settings
    cold = ctx.history.cold_start_seconds
    if not ctx.zero_available or s.min_replicas == 0 or ctx.objective.seconds is None:
        return None
    if cold is None:
        return None  # what waking costs is unmeasured: no advice to pay it
    longest = max(IDLE_SPELL_SECONDS, s.scale_down_delay_seconds + 600)
    idle = [r is not None and r == 0 for r in ctx.history.rps]
    spells = [(b - a) * ctx.step for a, b in _episodes(idle) if (b - a) * ctx.step >= longest]
    share = sum(spells) / (len(idle) * ctx.step) if idle else 0.0
    if not spells or share < 0.25:
        return None
    typical = statistics.median(spells)
    if cold > COLD_SHARE_OF_SPELL * typical:
        return None
    return Recommendation(
        setting="min_replicas",
        current=s.min_replicas,
        recommended=0,
        reason="IdleReplicas",
        message=(
            f"{len(spells)} spells without a request, {about(typical)} each (median), "
            f"{share * 100:.0f}% of the time, while {s.min_replicas} "
            f"replica{'s' if s.min_replicas > 1 else ''} stayed warm. A cold start takes "
            f"{about(cold)}: allow minReplicas 0 (the activator holds the first request "
            "after each spell while a replica starts)."
        ),
        evidence={
            "idleSpells": len(spells),
            "idleSpellMedianSeconds": round(typical),
            "idleShare": round(share, 2),
            "coldStartSeconds": round(cold, 1),
        },
        confidence=round(min(0.9, 0.5 + share / 2), 2),
    )


def cold_starts_from_zero(ctx: Context) -> Recommendation | None:
    """A model at minReplicas 0 woken again and again, each wake-up slow: keep one replica
    (or, by PrematureScaleDown, wait longer before going to zero; the replay picks)."""
    s = ctx.settings
    if s.min_replicas != 0:
        return None
    wakes = [
        i
        for i in range(1, len(ctx.replicas))
        if ctx.replicas[i - 1] == 0 and (ctx.replicas[i] or 0) > 0
    ]
    slow = [
        i for i in wakes if any(ctx.degraded(j) for j in range(i, min(i + 2, len(ctx.replicas))))
    ]
    hours = len(ctx.history.times) * ctx.step / 3600
    if len(slow) < 3 or len(slow) / hours < 0.5:
        return None
    zero = [r == 0 for r in ctx.replicas]
    gaps = [(b - a) * ctx.step for a, b in _episodes(zero)]
    return Recommendation(
        setting="min_replicas",
        current=0,
        recommended=1,
        reason="ColdStartsFromZero",
        message=(
            f"Woken from zero {len(wakes)} times in {hours:.1f}h, {len(slow)} of them with "
            f"latency over the objective while the replica started; the spells at zero lasted "
            f"{about(statistics.median(gaps)) if gaps else 'unknown'} (median). Keep 1 replica "
            "warm, or wait longer before scaling to zero."
        ),
        evidence={
            "wakeUps": len(wakes),
            "slowWakeUps": len(slow),
            "zeroSpellsSeconds": [round(g) for g in gaps[:10]],
        },
        confidence=round(min(0.9, 0.5 + 0.1 * len(slow)), 2),
    )


RULES: tuple[tuple[Reason, Callable[[Context], Recommendation | None]], ...] = (
    ("Thrash", thrash),
    ("CapacityExhausted", capacity_exhausted),
    ("ColdStarts", cold_starts),
    ("ConcurrencyTargetTooHigh", concurrency_target_too_high),
    ("ConcurrencyTargetTooLow", concurrency_target_too_low),
    ("PrematureScaleDown", premature_scale_down),
    ("AsyncBacklog", async_backlog),
    ("OverProvisioned", over_provisioned),
    ("IdleReplicas", idle_replicas),
    ("ColdStartsFromZero", cold_starts_from_zero),
)
