"""Replay: a model's traffic under other autoscaling settings, step by step, with the
scaling rule the operator runs (`scaler.policy.advance`, the core of its `decide`).

The model of a replica: it serves its share of the in-flight requests with latency
base + per_request x (per-replica concurrency - 1); in-flight requests follow Little's law
(concurrency = arrival rate x latency); new replicas take `startup_seconds` to become
active, and meanwhile requests that find no active replica wait for one.

`fit` learns that model from a History (the arrivals, the service curve by least squares
on latency against per-replica concurrency, the cold start from the spans replicas spent
starting); `run` replays arrivals under some settings; `outcome` sums a History up (what
it cost, how fast it was) so the observed and the replayed compare like with like.
"""

import bisect
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import add

from pydantic import BaseModel

from modelpilot.advisor.model import History
from modelpilot.advisor.rules import median_line, ranked
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.scaler.policy import Plain, ScalerState, advance

Load = Callable[[float], float]  # seconds since start -> requests per second


@dataclass(frozen=True, slots=True)
class ModelBehaviour:
    base_seconds: float = 0.2
    per_request_seconds: float = 0.05
    startup_seconds: float = 60.0
    async_per_replica_rps: float = 0.0  # async requests one replica completes per second


@dataclass(slots=True)
class Step:
    t: float
    rps: float
    concurrency: float
    latency: float
    active: int
    starting: int
    desired: int
    queue: float


def latency_at(rps: float, active: int, b: ModelBehaviour, waiting: float) -> tuple[float, float]:
    """(latency, concurrency) for `rps` spread over `active` replicas."""
    if rps <= 0:
        return b.base_seconds, 0.0
    if active == 0:  # everyone waits for the first replica to come up
        latency = b.base_seconds + waiting
        return latency, rps * latency
    # C = rps x (base + k (C/A - 1))  =>  C = rps (base - k) / (1 - rps k / A)
    k = b.per_request_seconds
    denominator = 1 - rps * k / active
    if denominator <= 0.1:  # overloaded: queues grow; cap at ten times the base load
        concurrency = rps * (b.base_seconds - k) / 0.1 if b.base_seconds > k else rps * 10
        overload = rps * k / active
        latency = concurrency / rps * overload
        return latency, concurrency
    concurrency = rps * (b.base_seconds - k) / denominator
    floor = rps * b.base_seconds
    concurrency = concurrency if concurrency >= floor else floor  # max(), at a third the cost
    return concurrency / rps, concurrency


def run(
    settings: AutoscalingSpec,
    load: Load,
    behaviour: ModelBehaviour,
    seconds: float,
    step: float = 15.0,
    seed: int = 1,
    async_load: Load | None = None,
    noise: float = 0.03,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> list[Step]:
    """`seconds` of `load` under `settings` (from each step in `changed` on, its settings),
    one Step per `step`."""
    times = [n * step for n in range(int(seconds // step))]
    rps = [max(load(t), 0.0) for t in times]
    queued = [async_load(t) for t in times] if async_load is not None else None
    rng = random.Random(seed)
    path = trajectory(settings, rps, behaviour, step, rng, noise, queued, changed)
    columns = zip(
        times,
        rps,
        path.concurrency,
        path.latency,
        path.active,
        path.starting,
        path.desired,
        path.queue,
        strict=True,
    )
    return [Step(*point) for point in columns]


@dataclass(slots=True)
class Trajectory:
    """A run's signals, a list each with one value per step."""

    concurrency: list[float]
    latency: list[float]
    active: list[int]
    starting: list[int]
    desired: list[int]
    queue: list[float]


def trajectory(
    settings: AutoscalingSpec,
    rps: Sequence[float],
    b: ModelBehaviour,
    step: float,
    rng: random.Random | None = None,
    noise: float = 0.0,
    async_rps: Sequence[float] | None = None,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> Trajectory:
    """Arrivals (`rps` per step, >= 0) under `settings`: the scaler's rule decides at every
    step on the window's average concurrency. The inner loop of every replay (thousands of
    steps per candidate setting, candidates per troubled model, models per fleet), so it
    keeps plain lists and calls the rule's message-free core. `changed`: (step, settings)
    in step order, the settings in force from that step on (as Auto mode changed them)."""
    state = ScalerState(replicas=settings.min_replicas)
    knobs = Plain.of(settings)
    # When each replica is active, kept sorted: replicas start in time order and the
    # latest started go first on the way down.
    ready_at: list[float] = [-1.0] * settings.min_replicas
    width = max(1, int(settings.autoscaling_window_seconds // step))
    window: deque[float] = deque(maxlen=width)
    switches = list(changed)
    switch_at = switches[0][0] if switches else -1
    queue = 0.0
    size = len(rps)
    # Filled in place (a store costs half an append): this loop runs some half a million
    # times per fleet evaluation.
    concurrencies, latencies, queues = [0.0] * size, [0.0] * size, [0.0] * size
    actives, startings, desireds = [0] * size, [0] * size, [0] * size
    jitter = rng.uniform if rng is not None and noise else None
    ready = bisect.bisect_right
    for n, r in enumerate(rps):
        t = n * step
        if n == switch_at:
            _, later = switches.pop(0)
            knobs = Plain.of(later)
            width = max(1, int(later.autoscaling_window_seconds // step))
            window = deque(window, maxlen=width)
            switch_at = switches[0][0] if switches else -1
        count = len(ready_at)
        active = ready(ready_at, t)
        starting = count - active
        soonest = ready_at[active] - t if starting else 0.0
        latency, concurrency = latency_at(r, active, b, soonest / 2)
        if jitter is not None:
            latency *= 1 + jitter(-noise, noise)
        if async_rps is not None:
            queue = max(queue + (async_rps[n] - active * b.async_per_replica_rps) * step, 0)
        if width == 1:  # a window of one step (the default 60 s at 60 s points)
            average = concurrency
        else:
            window.append(concurrency)
            average = sum(window) / len(window)
        replicas, want, _, state = advance(knobs, average, state, t)
        if replicas > count:
            ready_at += [t + b.startup_seconds] * (replicas - count)
        elif replicas < count:
            del ready_at[replicas:]
        concurrencies[n] = concurrency
        latencies[n] = latency
        actives[n] = active
        startings[n] = starting
        desireds[n] = want or replicas
        queues[n] = queue
    return Trajectory(concurrencies, latencies, actives, startings, desireds, queues)


def history(steps: list[Step], start: float, step: float = 15.0) -> History:
    """What the advisor would read from Prometheus for these steps."""
    return History(
        times=[start + s.t for s in steps],
        step=step,
        concurrency=[s.concurrency for s in steps],
        latency=[s.latency if s.rps > 0 else None for s in steps],
        rps=[s.rps for s in steps],
        errors=[0.0 for _ in steps],
        active=[float(s.active) for s in steps],
        starting=[float(s.starting) for s in steps],
        desired=[float(s.desired) for s in steps],
        queue=[s.queue for s in steps],
    )


# -- fitting --------------------------------------------------------------------------------


class Fitted(BaseModel):
    """A model learned from its own history."""

    arrivals: list[float]  # requests per second at each point (unknown: none arrived)
    step: float
    base_seconds: float  # mean latency at one request per replica
    per_request_seconds: float  # more mean latency per extra request on a replica
    tail_ratio: float  # the latency series (a percentile) over the mean, typically
    cold_start_seconds: float | None  # None: no replica was seen starting
    points: int  # how many points fed the service curve

    @property
    def behaviour(self) -> ModelBehaviour:
        return ModelBehaviour(
            self.base_seconds, self.per_request_seconds, self.cold_start_seconds or 0.0
        )


MIN_FIT_POINTS = 10
MIN_SPREAD = 0.05  # requests per replica: the load's spread below which a slope is noise
# How much closer (in summed log ratios, see `_miss`) the medians' curve must replay a
# history than the line to be kept: the line predicts other settings better where both
# replay the history about as well (it follows the slope of overloaded points too).
CLEARLY_BETTER = 0.25


def _runs(flags: Sequence[bool]) -> list[int]:
    """Lengths of the runs of True."""
    out, length = [], 0
    for flag in [*flags, False]:
        if flag:
            length += 1
        elif length:
            out.append(length)
            length = 0
    return out


def _line(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares: (slope, intercept)."""
    mean_x = statistics.fmean([x for x, _ in pairs])  # lists: fmean counts a generator
    mean_y = statistics.fmean([y for _, y in pairs])  # item by item in Python
    var = sum((x - mean_x) ** 2 for x, _ in pairs)
    # Points at (nearly) one load have no slope to learn: noise would make one up.
    flat = var < MIN_SPREAD**2 * len(pairs)
    slope = 0.0 if flat else sum((x - mean_x) * (y - mean_y) for x, y in pairs) / var
    return slope, mean_y - slope * mean_x


def fit(
    h: History,
    settings: AutoscalingSpec | None = None,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> Fitted | None:
    """The service curve, arrivals and cold start of `h`; None with too few points.

    The history's latency is a percentile (the objective's), while the concurrency the
    scaler acts on follows the mean (Little's law: concurrency / arrival rate, exact from
    the meters' own series). So the curve is fitted on the percentile scaled down by its
    typical ratio to the mean, against per-replica concurrency, and a replay scales its
    latency back up by that ratio.

    With the `settings` that ran (and `changed`, as Auto mode changed them), both curves of
    `_curves` are replayed under them, and the second is kept only when it reproduces the
    history (replica-hours and p50) clearly better than the line does."""
    points = [
        (c / a, c / r, lat)
        for c, r, lat, a in zip(h.concurrency, h.rps, h.latency, h.active, strict=True)
        if c is not None and r and a and c > 0 and lat is not None
    ]
    if len(points) < MIN_FIT_POINTS or not h.times:
        return None
    tail = statistics.median(lat / mean for _, mean, lat in points)
    spans = _runs([(s or 0) > 0 for s in h.starting])
    # A span of D seconds covers D / step grid points on average, wherever it starts; a
    # replay counts replicas starting from the point after the one that asked for them,
    # D / step - 1/2 on average, so half a step more reproduces the spans seen.
    cold = h.cold_start_seconds or ((statistics.fmean(spans) + 0.5) * h.step if spans else None)
    fits = [
        Fitted(
            arrivals=[r or 0.0 for r in h.rps],
            step=h.step,
            base_seconds=base,
            per_request_seconds=slope,
            tail_ratio=tail,
            cold_start_seconds=cold,
            points=len(points),
        )
        for base, slope in _curves(points, tail)
    ]
    if settings is None or len(fits) == 1:
        return fits[0]
    seen = outcome(h, None)
    line, medians = (_miss(seen, replay_outcome(f, settings, None, changed)) for f in fits)
    return fits[1] if medians < line - CLEARLY_BETTER else fits[0]


def _curves(points: Sequence[tuple[float, float, float]], tail: float) -> list[tuple[float, float]]:
    """(base, slope) of the service curve: by least squares on the percentile scaled to
    the mean, and, where enough points lie on each side of one request per replica, the
    `median_line` of the mean latency (Little's law). The first holds where load changes
    are sampled finely; the second where a window's latency lags its concurrency."""
    pairs = [(x, lat / tail) for x, _, lat in points]
    slope, intercept = _line(pairs)
    # Points far off the line (a replica overwhelmed for a step, then relieved) would drag
    # it: drop those beyond 3 median deviations (and a quarter of the typical latency, so a
    # history mostly at one load does not discard every other) once and fit again.
    residuals = [abs(y - intercept - slope * x) for x, y in pairs]
    cut = 3 * statistics.median(residuals) + 0.25 * statistics.median(y for _, y in pairs)
    kept = [p for p, r in zip(pairs, residuals, strict=True) if r <= cut]
    if len(kept) >= MIN_FIT_POINTS:
        slope, intercept = _line(kept)
    slope = max(slope, 0.0)  # more load is never faster
    # latency = base + k (c - 1): the line's value at one request per replica is the base.
    curves = [(max(intercept + slope, 1e-3), slope)]
    medians = median_line([(x, mean) for x, mean, _ in points], MIN_FIT_POINTS // 2)
    if medians is not None:
        curves.append((max(medians[0], 1e-3), max(medians[1], 0.0)))
    return curves


def _miss(seen: "Outcome", again: "Outcome") -> float:
    """How far a replay is from what was seen: replica-hours and p50, as log ratios. Not the
    tail: a p95 lands on one slow point or another depending on how the grid falls on a
    burst, and would pick whichever curve happens to land on the same one."""
    ratios = [
        (again.replica_hours, seen.replica_hours),
        (again.latency_p50, seen.latency_p50),
    ]
    return sum(abs(math.log(a / b)) for a, b in ratios if a and b)


def replay(
    fitted: Fitted,
    settings: AutoscalingSpec,
    start: float = 0.0,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> History:
    """The fitted arrivals under `settings` (and from each step in `changed` on, its
    settings), as a History on the same grid (its latency at the objective's percentile, as
    the history it was fitted from)."""
    rps, step, tail = fitted.arrivals, fitted.step, fitted.tail_ratio
    path = trajectory(settings, rps, fitted.behaviour, step, changed=changed)
    return History(
        times=[start + n * step for n in range(len(rps))],
        step=step,
        concurrency=path.concurrency,
        latency=[v * tail if r > 0 else None for v, r in zip(path.latency, rps, strict=True)],
        rps=rps,
        errors=[0.0] * len(rps),
        active=[float(a) for a in path.active],
        starting=[float(s) for s in path.starting],
        desired=[float(d) for d in path.desired],
        queue=path.queue,
    )


# -- outcomes -------------------------------------------------------------------------------


class Outcome(BaseModel):
    """What a history cost and how it served. Latency figures are over the points with
    traffic, of the latency series (the objective's percentile at each point)."""

    replica_hours: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    attainment: float | None  # share of points with traffic within the objective
    cold_starts: int  # scale-ups: each starts replicas that are not serving yet
    scale_events_per_hour: float


def outcome(h: History, objective_seconds: float | None) -> Outcome:
    replicas = [a + (s or 0) for a, s in zip(h.active, h.starting, strict=True) if a is not None]
    busy = [lat for lat, r in zip(h.latency, h.rps, strict=True) if lat is not None and r]
    return _summary(replicas, busy, len(h.times), h.step, objective_seconds)


def replay_outcome(
    fitted: Fitted,
    settings: AutoscalingSpec,
    objective_seconds: float | None,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> Outcome:
    """outcome(replay(fitted, settings, changed=changed), objective_seconds), straight from
    the trajectory: choosing values replays several candidates per troubled model, and
    building each one's History only to sum it up took a third of the time."""
    rps = fitted.arrivals
    path = trajectory(settings, rps, fitted.behaviour, fitted.step, changed=changed)
    tail = fitted.tail_ratio
    busy = [v * tail for v, r in zip(path.latency, rps, strict=True) if r > 0]
    replicas = list(map(add, path.active, path.starting))
    return _summary(replicas, busy, len(rps), fitted.step, objective_seconds)


def _summary(
    replicas: Sequence[float],
    busy: list[float],
    points: int,
    step: float,
    objective_seconds: float | None,
) -> Outcome:
    """An Outcome from the replicas at each point, the latency at each point with traffic,
    and the grid."""
    changes = [b - a for a, b in itertools.pairwise(replicas) if b != a]
    ordered = sorted(busy)
    hours = points * step / 3600
    within = (
        bisect.bisect_right(ordered, objective_seconds) / len(ordered)
        if ordered and objective_seconds is not None
        else None
    )
    return Outcome(
        replica_hours=sum(replicas) * step / 3600,
        latency_p50=ranked(ordered, 50) if ordered else None,
        latency_p95=ranked(ordered, 95) if ordered else None,
        latency_p99=ranked(ordered, 99) if ordered else None,
        attainment=within,
        cold_starts=sum(1 for c in changes if c > 0),
        scale_events_per_hour=len(changes) / hours if hours else 0.0,
    )


def trace_arrivals(timestamps: Sequence[float], step: float) -> list[float]:
    """Requests per second in each `step` of an arrival trace (unix seconds, any order)."""
    if not timestamps:
        return []
    first = min(timestamps)
    counts = [0] * (int((max(timestamps) - first) // step) + 1)
    for ts in timestamps:
        counts[int((ts - first) // step)] += 1
    return [c / step for c in counts]
